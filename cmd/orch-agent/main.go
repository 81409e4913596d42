// Command orch-agent runs on every node: it registers with the schedulers, runs the node's
// tasks in containerd, each in its own network namespace ENI, and reports their status.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"orch/agent"
	"orch/agent/logs"
	"orch/internal/cmdutil"
)

func main() {
	if logs.IsDriver(os.Args) {
		os.Exit(logs.DriverMain(os.Args[1:]))
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "orch-agent:", err)
		os.Exit(1)
	}
}

// envJoinToken is read when neither --join-token nor --join-token-file is given.
const envJoinToken = "ORCH_JOIN_TOKEN"

// resolveJoinToken picks the join token: --join-token, else --join-token-file, else
// $ORCH_JOIN_TOKEN. An agent that has enrolled already needs none, so then a token file that
// is gone (deleted after the first start, as it should be) is no error.
func resolveJoinToken(dataDir, flagValue, file string) (string, error) {
	if flagValue != "" {
		return strings.TrimSpace(flagValue), nil
	}
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			if agent.Enrolled(dataDir) {
				return "", nil
			}
			return "", fmt.Errorf("--join-token-file: %w", err)
		}
		return strings.TrimSpace(string(b)), nil
	}
	return strings.TrimSpace(os.Getenv(envJoinToken)), nil
}

func run() error {
	var (
		dataDir    = flag.String("data-dir", "/var/lib/orch-agent", "checkpoint, task files and container logs")
		containerd = flag.String("containerd", "/run/containerd/containerd.sock", "containerd socket")
		namespace  = flag.String("namespace", "orch", "containerd namespace")
		listen     = flag.String("listen", "127.0.0.1:7403", "node API address (the schedulers fetch logs here)")
		advertise  = flag.String("advertise", "", "node API address the schedulers dial (default --listen)")
		metrics    = flag.String("metrics-addr", "127.0.0.1:7404", "HTTP address for /metrics (empty: off)")
		netnsDir   = flag.String("netns-dir", "", "where task network namespaces are mounted (default /run/netns)")
		hostNetNS  = flag.String("host-netns", "", "do host-side networking in this network namespace (tests)")
		hostname   = flag.String("hostname", "", "hostname to register (default the machine's)")
		cpu        = flag.Int("cpu", 0, "CPU units to offer (default 1024 per core)")
		memory     = flag.Int("memory", 0, "memory MiB to offer (default all)")
		logLevel   = flag.String("log-level", "info", "debug, info, warn or error")
		joinToken  = flag.String("join-token", "", "worker join token ORCH1-W-... (orchctl operator join-token worker prints it); needed on the first start only, to enroll; without it and --join-token-file, $"+envJoinToken)
		tokenFile  = flag.String("join-token-file", "", "file holding the worker join token; needed on the first start only (--join-token wins over it)")
		schedulers cmdutil.ListFlag
		clusters   cmdutil.ListFlag
		attrs      cmdutil.ListFlag
		insecure   cmdutil.ListFlag
	)
	flag.Var(&schedulers, "scheduler", "scheduler gRPC address (repeatable or comma-separated; default 127.0.0.1:7400)")
	flag.Var(&clusters, "cluster", "cluster to serve (repeatable; \"*\" for every cluster; default \"default\")")
	flag.Var(&attrs, "attribute", "custom attribute name=value (repeatable)")
	flag.Var(&insecure, "insecure-registry", "registry host:port to pull from over plain HTTP (repeatable; loopback registries always are)")
	flag.Parse()
	log, err := cmdutil.NewLogger(*logLevel)
	if err != nil {
		return err
	}
	if len(schedulers) == 0 {
		schedulers = cmdutil.ListFlag{"127.0.0.1:7400"}
	}
	attributes := map[string]string{}
	for _, kv := range attrs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return fmt.Errorf("--attribute %q: want name=value", kv)
		}
		attributes[k] = v
	}
	token, err := resolveJoinToken(*dataDir, *joinToken, *tokenFile)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	a, err := agent.New(agent.Config{
		Endpoints: schedulers, JoinToken: token, Clusters: clusters, DataDir: *dataDir, ContainerdAddress: *containerd, Namespace: *namespace,
		NetNSDir: *netnsDir, HostNetNS: *hostNetNS, ListenAddr: *listen, AdvertiseAddr: *advertise, MetricsAddr: *metrics,
		Hostname: *hostname, Attributes: attributes, InsecureRegistries: insecure, CPU: *cpu, Memory: *memory, Logger: log,
	})
	if err != nil {
		return err
	}
	defer a.Close()
	log.Info("agent started", "schedulers", strings.Join(schedulers, ","), "clusters", clusters.String())
	return a.Run(ctx)
}
