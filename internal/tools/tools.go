//go:build tools

// Package tools pins the modules orch depends on before every one of them is imported by code,
// and the protobuf generators used by `make proto`.
package tools

import (
	_ "github.com/containerd/cgroups/v3/cgroup2/stats"
	_ "github.com/containerd/containerd/v2/client"
	_ "github.com/containerd/errdefs"
	_ "github.com/google/go-containerregistry/pkg/v1/remote"
	_ "github.com/google/nftables"
	_ "github.com/hashicorp/go-memdb"
	_ "github.com/hashicorp/raft"
	_ "github.com/hashicorp/raft-boltdb/v2"
	_ "github.com/opencontainers/runtime-spec/specs-go"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/spf13/cobra"
	_ "github.com/vishvananda/netlink"
	_ "github.com/vishvananda/netns"
	_ "go.etcd.io/bbolt"
	_ "google.golang.org/grpc/cmd/protoc-gen-go-grpc"
	_ "google.golang.org/protobuf/cmd/protoc-gen-go"
)
