//go:build !linux

package cli

import "io"

// openTerminal never finds a terminal outside Linux (turning echo off needs per-system
// ioctls): the passphrase then comes from --passphrase-file or $ORCH_SNAPSHOT_PASSPHRASE.
var openTerminal = func(in io.Reader) (r io.Reader, restore func(), ok bool) {
	return nil, nil, false
}
