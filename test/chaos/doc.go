// Package chaos is orch's chaos suite: three orch-scheduler processes, each in a network
// namespace of its own on a test bridge, one orch-agent with a private containerd, concurrent
// clients writing and reading real API objects (tags of a cluster, run-task, stop-task) while a
// nemesis kills, freezes, partitions and restarts the schedulers. At the end the recorded
// history is checked with porcupine for linearizability, every acknowledged write must be
// present, no task id may be duplicated and no address handed out twice, the three
// schedulers must agree on the final state, and each must still refuse clients without a
// valid API token. All traffic is TLS under one cluster CA (see security_test.go).
//
// Each run prints its seed and nemesis schedule (`seed=... schedule=[...]`); ORCH_CHAOS_SEED
// replays a schedule (the workload's choices come from the same seed, the timing does not),
// ORCH_CHAOS_DURATION (a Go duration) lengthens the workload for soak runs. The suite needs
// root and is skipped in -short mode.
package chaos
