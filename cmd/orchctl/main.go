// Command orchctl is the command line client of orch; see package orch/pkg/cli.
package main

import (
	"os"

	"orch/pkg/cli"
)

func main() { os.Exit(cli.Execute()) }
