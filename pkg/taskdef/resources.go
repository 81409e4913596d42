package taskdef

import (
	"slices"
	"strconv"
	"time"

	orchv1 "orch/proto/orch/v1"
)

// DefaultStopTimeout is how long a container gets between SIGTERM and SIGKILL when its
// definition does not say (ECS's default).
const DefaultStopTimeout = 30 * time.Second

// Essential reports whether the container's exit stops the task. Unset means true, as in ECS.
func Essential(c *orchv1.ContainerDefinition) bool {
	return c == nil || c.Essential == nil || *c.Essential
}

// StopTimeout is the time between SIGTERM and SIGKILL for the container. Unset, or 0, means
// DefaultStopTimeout: the ECS agent, too, treats 0 as "not set".
func StopTimeout(c *orchv1.ContainerDefinition) time.Duration {
	if s := c.GetStopTimeout(); s > 0 {
		return time.Duration(s) * time.Second
	}
	return DefaultStopTimeout
}

// ContainerReservation is what placement reserves for one container: its cpu units and its
// memoryReservation if set, else its memory (hard limit), else 0.
func ContainerReservation(c *orchv1.ContainerDefinition) (cpu, memoryMiB int) {
	cpu = int(c.GetCpu())
	switch {
	case c == nil:
	case c.MemoryReservation != nil:
		memoryMiB = int(*c.MemoryReservation)
	case c.Memory != nil:
		memoryMiB = int(*c.Memory)
	}
	return cpu, memoryMiB
}

// TaskResources is what placement reserves for a task: the task-level cpu and memory where
// set, else the sum of ContainerReservation over the containers (each dimension on its own).
func TaskResources(td *orchv1.TaskDefinition) (cpu, memoryMiB int) {
	var sumCPU, sumMem int
	for _, c := range td.GetContainerDefinitions() {
		ccpu, cmem := ContainerReservation(c)
		sumCPU += ccpu
		sumMem += cmem
	}
	cpu, memoryMiB = sumCPU, sumMem
	if n, err := strconv.Atoi(td.GetCpu()); err == nil && n > 0 {
		cpu = n
	}
	if n, err := strconv.Atoi(td.GetMemory()); err == nil && n > 0 {
		memoryMiB = n
	}
	return cpu, memoryMiB
}

// HostPorts lists, sorted and without repeats, the host ports the task binds, by protocol:
// each mapping's hostPort; in awsvpc and host modes the containerPort (or every port of the
// containerPortRange) when hostPort is 0. In bridge mode and orch's default (empty) mode a
// hostPort of 0 binds nothing here (ECS: a dynamic port chosen at start); none mode binds
// nothing.
func HostPorts(td *orchv1.TaskDefinition) (tcp, udp []int32) {
	mode := td.GetNetworkMode()
	for _, c := range td.GetContainerDefinitions() {
		for _, pm := range c.GetPortMappings() {
			if pm == nil {
				continue
			}
			var ports []int32
			if pm.GetContainerPortRange() != "" {
				lo, hi, ok := parsePortRange(pm.GetContainerPortRange())
				if ok && (mode == "awsvpc" || mode == "host") {
					for p := lo; p <= hi; p++ {
						ports = append(ports, p)
					}
				}
			} else if p, _ := boundHostPort(mode, pm); p > 0 {
				ports = append(ports, p)
			}
			if protocolOf(pm) == "udp" {
				udp = append(udp, ports...)
			} else {
				tcp = append(tcp, ports...)
			}
		}
	}
	slices.Sort(tcp)
	slices.Sort(udp)
	return slices.Compact(tcp), slices.Compact(udp)
}
