// Package runtime is the agent's view of a container runtime: pull, create, start, wait, stop,
// delete, list and stats for the containers of tasks. runtime/containerd implements it with the
// containerd client; the task runner depends only on this interface.
package runtime

import (
	"context"
	"errors"
	"time"

	orchv1 "orch/proto/orch/v1"
)

// ErrNotFound is returned when the named container does not exist.
var ErrNotFound = errors.New("not found")

// Labels set on every container, so that a restarted agent can find and adopt what it created.
const (
	LabelTaskID    = "orch.task-id"
	LabelContainer = "orch.container-name"
	LabelCluster   = "orch.cluster"
)

// ContainerSpec is one container of a task, with everything resolved that the runtime needs.
type ContainerSpec struct {
	ID     string // runtime id: unique per task and container ("<task id>-<name>")
	TaskID string
	Def    *orchv1.ContainerDefinition
	// Env is the final environment (definition, overrides and orch's own variables), "K=V".
	Env []string
	// Command replaces Def.Command when non-nil (run-task overrides).
	Command []string
	// NetNSPath is the task's network namespace (/run/netns/<name>); containers share it.
	NetNSPath string
	// Hostname inside the container.
	Hostname string
	// Mounts are the definition's mountPoints resolved to host paths.
	Mounts []Mount
	// LogDir is where the container's stdout/stderr log files go (see agent/logs).
	LogDir string
	// Labels are extra container labels (dockerLabels plus the orch labels above).
	Labels map[string]string
	// CPUShares and memory limits, already derived from the definition (0 = none).
	CPUShares         uint64
	CPUQuota          int64 // microseconds per CPUPeriod; 0 = no quota
	CPUPeriod         uint64
	MemoryLimitBytes  int64
	MemoryReservation int64
}

// Mount is a bind mount from the host into the container.
type Mount struct {
	Source, Destination string
	ReadOnly            bool
}

// ExitStatus is how a container's process ended.
type ExitStatus struct {
	Code      int32
	OOMKilled bool
	At        time.Time
}

// State of a container as the runtime reports it.
type State string

const (
	StateCreated State = "CREATED"
	StateRunning State = "RUNNING"
	StateStopped State = "STOPPED"
	StateUnknown State = "UNKNOWN"
)

// ContainerInfo describes an existing container, for adoption after an agent restart.
type ContainerInfo struct {
	ID     string
	Labels map[string]string
	State  State
	Pid    uint32
	Exit   *ExitStatus // set when State is STOPPED
	Image  string
}

// Stats are a container's resource usage, from its cgroup.
type Stats struct {
	CPUUsageUsec    uint64
	MemoryBytes     uint64
	MemoryPeakBytes uint64 // 0 when the kernel does not report it
	OOMKills        uint64
}

// PullResult is the outcome of making an image present.
type PullResult struct {
	Digest string
	Pulled bool // false when the image was already present and unpacked
}

// Runtime runs containers. Every method is safe for concurrent use. Delete and Stop of a
// container that is already gone succeed ("already gone" is success).
type Runtime interface {
	// Pull makes the image present and unpacked; it does not contact the registry when the image
	// is already there.
	Pull(ctx context.Context, ref string) (PullResult, error)
	// Create creates the container (not started). Creating an ID that exists is an error.
	Create(ctx context.Context, spec ContainerSpec) error
	// Start starts the container's process and returns its pid.
	Start(ctx context.Context, id string) (uint32, error)
	// Wait returns a channel that receives the exit status once the process exits. It works for
	// containers started by an earlier agent process too (adoption).
	Wait(ctx context.Context, id string) (<-chan ExitStatus, error)
	// Stop sends SIGTERM (or the image's stop signal), then SIGKILL after timeout; it returns once
	// the process has exited.
	Stop(ctx context.Context, id string, timeout time.Duration) error
	// Delete removes the container's task, the container and its snapshot.
	Delete(ctx context.Context, id string) error
	// List returns every container in the agent's namespace.
	List(ctx context.Context) ([]ContainerInfo, error)
	// Stats samples the container's cgroup.
	Stats(ctx context.Context, id string) (Stats, error)
}
