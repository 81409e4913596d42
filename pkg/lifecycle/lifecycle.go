// Package lifecycle holds ECS's task and container status vocabulary and its one rule: status
// only moves forward. The scheduler's FSM and the agent both use it.
package lifecycle

// Task lastStatus values, in lifecycle order.
const (
	Provisioning   = "PROVISIONING"
	Pending        = "PENDING"
	Activating     = "ACTIVATING"
	Running        = "RUNNING"
	Deactivating   = "DEACTIVATING"
	Stopping       = "STOPPING"
	Deprovisioning = "DEPROVISIONING"
	Stopped        = "STOPPED"
)

// Stop codes.
const (
	TaskFailedToStart         = "TaskFailedToStart"
	EssentialContainerExited  = "EssentialContainerExited"
	UserInitiated             = "UserInitiated"
	ServiceSchedulerInitiated = "ServiceSchedulerInitiated"
)

var taskRank = map[string]int{
	Provisioning: 10, Pending: 20, Activating: 30, Running: 40,
	Deactivating: 50, Stopping: 60, Deprovisioning: 70, Stopped: 80,
}

// Rank orders task statuses; unknown statuses rank 0.
func Rank(status string) int { return taskRank[status] }

// Valid reports whether status is a task lifecycle status.
func Valid(status string) bool { return taskRank[status] > 0 }

// Forward reports whether moving from cur to next goes forward (skipping is allowed).
func Forward(cur, next string) bool { return Rank(next) > Rank(cur) }

// Container lastStatus values.
const (
	ContainerPending = "PENDING"
	ContainerRunning = "RUNNING"
	ContainerStopped = "STOPPED"
)

var containerRank = map[string]int{ContainerPending: 1, ContainerRunning: 2, ContainerStopped: 3}

// ContainerForward reports whether a container may move from cur to next.
func ContainerForward(cur, next string) bool { return containerRank[next] > containerRank[cur] }

// Desired statuses.
const (
	DesiredRunning = "RUNNING"
	DesiredStopped = "STOPPED"
)
