// Package e2e holds orch's end-to-end tests: each one runs the real programs (orch-scheduler,
// orch-agent, orchctl) as child processes against a private containerd and OCI registry, in a
// "host" network namespace of its own, and checks what a user would check: orchctl's output
// and exit codes, HTTP answers from the tasks, and what is left in containerd, in the netns
// dir and on the host after a task stops. The tests need root and skip without it.
package e2e
