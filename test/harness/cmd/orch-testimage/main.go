// Command orch-testimage builds a busybox-static test image and pushes it to a registry over
// plain HTTP, printing the pushed reference. `make run` uses it to put the demo web image into
// the local registry:
//
//	orch-testimage -registry 127.0.0.1:5000 -demo-web
//	orch-testimage -registry 127.0.0.1:5000 -image demo/sleep:latest -entrypoint sleep -cmd 3600
//	orch-testimage -registry 127.0.0.1:5000 -image demo/sh:latest -cmd '["sh","-c","echo hi; sleep 5"]'
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"

	"orch/test/harness"
)

// listFlag is a string list given either as a JSON array or as comma-separated words.
type listFlag struct {
	vals []string
	set  bool
}

func (l *listFlag) String() string { return strings.Join(l.vals, ",") }

func (l *listFlag) Set(s string) error {
	l.set = true
	if strings.HasPrefix(strings.TrimSpace(s), "[") {
		if err := json.Unmarshal([]byte(s), &l.vals); err != nil {
			return fmt.Errorf("not a JSON array of strings: %w", err)
		}
		return nil
	}
	l.vals = strings.Split(s, ",")
	return nil
}

// multiFlag collects a repeated flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, " ") }
func (m *multiFlag) Set(s string) error { *m = append(*m, s); return nil }

func main() {
	var (
		registry   = flag.String("registry", "127.0.0.1:5000", "registry `host:port` (plain HTTP)")
		image      = flag.String("image", "demo/web:latest", "repository and tag to push as")
		demoWeb    = flag.Bool("demo-web", false, "build the demo web image: busybox httpd on port 80 serving \"hello from orch task <hostname>\"; -entrypoint, -cmd, -env, -workdir, -user and -file add to or replace its settings")
		workdir    = flag.String("workdir", "", "working directory")
		user       = flag.String("user", "", "user (name or uid[:gid]) the process runs as")
		entrypoint listFlag
		cmd        listFlag
		env, files multiFlag
	)
	flag.Var(&entrypoint, "entrypoint", "entrypoint `list`: a JSON array ('[\"sh\",\"-c\",\"echo hi\"]') or comma-separated words (sleep,60)")
	flag.Var(&cmd, "cmd", "command `list` (arguments to the entrypoint), in the same forms as -entrypoint")
	flag.Var(&env, "env", "environment variable `K=V` (repeatable); PATH is set when not given")
	flag.Var(&files, "file", "extra file `path=content` (repeatable); content starting with #! is executable")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "Usage: %s [flags]\n\nBuilds a single-layer linux/amd64 image from busybox-static (/bin/busybox and its applets,\n/etc/passwd with root and nobody, /tmp, /var/www) and pushes it over plain HTTP.\nPrints the pushed reference.\n\nFlags:\n", os.Args[0])
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "orch-testimage: unexpected arguments %q\n", flag.Args())
		flag.Usage()
		os.Exit(2)
	}

	var cfg harness.ImageConfig
	if *demoWeb {
		cfg = harness.DemoWebConfig()
	}
	if entrypoint.set {
		cfg.Entrypoint = entrypoint.vals
	}
	if cmd.set {
		cfg.Cmd = cmd.vals
	}
	cfg.Env = append(cfg.Env, env...)
	if *workdir != "" {
		cfg.WorkingDir = *workdir
	}
	if *user != "" {
		cfg.User = *user
	}
	for _, f := range files {
		p, content, ok := strings.Cut(f, "=")
		if !ok || !strings.HasPrefix(p, "/") {
			fmt.Fprintf(os.Stderr, "orch-testimage: -file %q: want /path=content\n", f)
			os.Exit(2)
		}
		if cfg.Files == nil {
			cfg.Files = map[string]string{}
		}
		cfg.Files[p] = content
	}
	if len(cfg.Entrypoint) == 0 && len(cfg.Cmd) == 0 {
		cfg.Cmd = []string{"sh"}
	}

	ref, err := harness.PushImage(*registry, *image, cfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "orch-testimage: %v\n", err)
		os.Exit(1)
	}
	fmt.Println(ref)
}
