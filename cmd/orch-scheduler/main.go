// Command orch-scheduler is orch's control plane: one Raft voter with the client and agent
// APIs. With --dev it is a whole single-node cluster in one process: a bootstrapped scheduler
// plus an embedded agent that serves every cluster from the local containerd.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"orch/agent"
	"orch/agent/logs"
	"orch/internal/cmdutil"
	"orch/internal/gctune"
	"orch/pkg/arn"
	"orch/pkg/cli"
	"orch/pkg/pki"
	"orch/scheduler/controllers"
	"orch/scheduler/server"
)

func main() {
	if logs.IsDriver(os.Args) {
		os.Exit(logs.DriverMain(os.Args[1:]))
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "orch-scheduler:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		dev        = flag.Bool("dev", false, "run a single-node cluster in this process: bootstrap, embedded agent, local containerd")
		dataDir    = flag.String("data-dir", "/var/lib/orch", "where Raft state (and in --dev the agent's state and task logs) is kept")
		grpcAddr   = flag.String("grpc-addr", "127.0.0.1:7400", "client and agent gRPC API address")
		httpAddr   = flag.String("http-addr", "127.0.0.1:7401", "HTTP address for /metrics and /healthz")
		raftAddr   = flag.String("raft-addr", "127.0.0.1:7402", "Raft transport address")
		nodeID     = flag.String("node-id", "", "Raft server id (default: generated once and kept in the data dir)")
		bootstrap  = flag.Bool("bootstrap", true, "form a new single-voter cluster when the data dir is empty (ignored with --join or --bootstrap-expect)")
		expect     = flag.Int("bootstrap-expect", 0, "form a new cluster of this many voters, found through --join (3 or 5)")
		advGRPC    = flag.String("advertise-grpc", "", "API address other schedulers and clients reach this one at (default --grpc-addr)")
		advRaft    = flag.String("advertise-raft", "", "Raft address other schedulers reach this one at (default --raft-addr)")
		caCert     = flag.String("ca-cert", "", "with --bootstrap-expect: the cluster CA certificate every server of the new cluster is given (`orchctl operator ca create`)")
		caKey      = flag.String("ca-key", "", "with --bootstrap-expect: the cluster CA's private key (delete it once the cluster has formed: the CA then lives in the replicated state)")
		joinToken  = flag.String("join-token", "", "with --join: the manager join token a new server enrolls with (`orchctl operator join-token manager`; default $ORCH_JOIN_TOKEN)")
		certTTL    = flag.Duration("cert-ttl", server.DefaultCertTTL, "lifetime of the node certificates this scheduler issues; every node renews its own at about half of it")
		restore    = flag.String("restore", "", "start a blank server from this snapshot (`orchctl operator snapshot save`): the data dir must be empty; the whole state and the cluster CA come from the snapshot")
		passFile   = flag.String("snapshot-passphrase-file", "", "with --restore: file holding the snapshot's passphrase (default $ORCH_SNAPSHOT_PASSPHRASE)")
		region     = flag.String("region", arn.DefaultRegion, "region in ARNs")
		account    = flag.String("account", arn.DefaultAccount, "account in ARNs")
		containerd = flag.String("containerd", "/run/containerd/containerd.sock", "--dev: containerd socket")
		agentAddr  = flag.String("agent-addr", "127.0.0.1:7403", "--dev: the embedded agent's node API address")
		agentData  = flag.String("agent-data-dir", "", "--dev: the embedded agent's data dir (default <data-dir>/agent)")
		netnsDir   = flag.String("netns-dir", "", "--dev: where task network namespaces are mounted (default /run/netns)")
		hostNetNS  = flag.String("host-netns", "", "--dev: do host-side networking (bridges, veths, nftables) in this network namespace")
		namespace  = flag.String("namespace", "orch", "--dev: containerd namespace of the embedded agent")
		logLevel   = flag.String("log-level", "info", "debug, info, warn or error")
		hbGrace    = flag.Duration("heartbeat-grace", controllers.DefaultGrace, "a host silent for longer (no heartbeat; agents send one every 5s) is marked disconnected; each new leader gives every host this long to reconnect")
		lostAfter  = flag.Duration("host-lost-after", controllers.DefaultLostAfter, "a host disconnected for longer is lost: its tasks are marked STOPPED (stopCode HostLost)")
		insecure   cmdutil.ListFlag
		join       cmdutil.ListFlag
	)
	flag.Var(&join, "join", "other schedulers' API addresses (repeatable or comma-separated): the peers of a --bootstrap-expect group, or a running cluster to join")
	flag.Var(&insecure, "insecure-registry", "--dev: registry host:port to pull from over plain HTTP (repeatable; loopback registries always are)")
	flag.Parse()
	// A large state gets more room between collections (GOGC set in the environment wins).
	defer gctune.Start(gctune.Config{})()
	log, err := cmdutil.NewLogger(*logLevel)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if *joinToken == "" {
		*joinToken = os.Getenv("ORCH_JOIN_TOKEN")
	}
	var snapshot []byte
	if *restore != "" {
		if snapshot, err = openSnapshot(ctx, *restore, *passFile); err != nil {
			return err
		}
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	srv, err := server.New(server.Config{
		DataDir: *dataDir, NodeID: *nodeID, GRPCAddr: *grpcAddr, HTTPAddr: *httpAddr, RaftAddr: *raftAddr,
		Bootstrap: *bootstrap || *dev, BootstrapExpect: *expect, Join: join, AdvertiseGRPC: *advGRPC, AdvertiseRaft: *advRaft, ARNs: arn.Builder{Region: *region, Account: *account}, Logger: log, Registry: reg,
		HeartbeatGrace: *hbGrace, HostLostAfter: *lostAfter,
		CACertFile: *caCert, CAKeyFile: *caKey, JoinToken: *joinToken, CertTTL: *certTTL, Restore: snapshot,
	})
	if err != nil {
		return err
	}
	defer srv.Close()
	log.Info("scheduler started", "grpc", srv.GRPCAddr(), "http", *httpAddr, "data_dir", *dataDir, "dev", *dev)
	if !*dev {
		<-ctx.Done()
		log.Info("shutting down")
		return nil
	}
	if err := srv.WaitLeader(ctx); err != nil {
		return err
	}
	worker, _, err := srv.JoinTokens(ctx)
	if err != nil {
		return err
	}
	if *agentData == "" {
		*agentData = filepath.Join(*dataDir, "agent")
	}
	a, err := agent.New(agent.Config{
		Endpoints: []string{srv.GRPCAddr()}, Clusters: []string{"*"}, DataDir: *agentData, ContainerdAddress: *containerd,
		Namespace: *namespace, NetNSDir: *netnsDir, HostNetNS: *hostNetNS, ListenAddr: *agentAddr,
		InsecureRegistries: insecure, Logger: log, Registry: reg, // agent metrics on the scheduler's /metrics
		JoinToken: worker,
	})
	if err != nil {
		return fmt.Errorf("embedded agent: %w", err)
	}
	defer a.Close()
	log.Info("embedded agent started; tasks keep running when this process stops")
	return a.Run(ctx)
}

// openSnapshot reads a snapshot sealed by `orchctl operator snapshot save` and opens it with
// the passphrase from passFile or $ORCH_SNAPSHOT_PASSPHRASE.
func openSnapshot(ctx context.Context, path, passFile string) ([]byte, error) {
	pass, err := cli.ReadPassphrase(ctx, cli.Passphrase{File: passFile, FileFlag: "--snapshot-passphrase-file"})
	if err != nil {
		return nil, fmt.Errorf("--restore: %w", err)
	}
	sealed, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--restore: %w", err)
	}
	plain, err := pki.Open(sealed, pass)
	if err != nil {
		return nil, fmt.Errorf("--restore %s: %w", path, err)
	}
	return plain, nil
}
