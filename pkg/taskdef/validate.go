package taskdef

import (
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"

	orchv1 "orch/proto/orch/v1"
)

// Limits and value sets from ECS's RegisterTaskDefinition documentation.
const (
	maxContainers           = 10
	maxTags                 = 50
	maxTagKey               = 128
	maxTagValue             = 256
	maxPlacementConstraints = 10
	minContainerMemoryMiB   = 6 // Docker 20.10+ reserves 6 MiB per container
	maxStopTimeout          = 120
)

var (
	networkModes     = []string{"none", "bridge", "awsvpc", "host"}
	compatibilities  = []string{"EC2", "FARGATE", "EXTERNAL", "MANAGED_INSTANCES"}
	protocols        = []string{"tcp", "udp"}
	conditions       = []string{"START", "COMPLETE", "SUCCESS", "HEALTHY"}
	healthCheckKinds = []string{"CMD", "CMD-SHELL", "NONE"}
	pidModes         = []string{"host", "task"}
	ipcModes         = []string{"host", "task", "none"}
	devicePerms      = []string{"read", "write", "mknod"}
	ulimitNames      = []string{"core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice",
		"nofile", "nproc", "rss", "rtprio", "rttime", "sigpending", "stack"}
	capabilityNames = []string{"ALL", "AUDIT_CONTROL", "AUDIT_WRITE", "BLOCK_SUSPEND", "CHOWN",
		"DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "IPC_LOCK", "IPC_OWNER", "KILL", "LEASE",
		"LINUX_IMMUTABLE", "MAC_ADMIN", "MAC_OVERRIDE", "MKNOD", "NET_ADMIN", "NET_BIND_SERVICE",
		"NET_BROADCAST", "NET_RAW", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_ADMIN", "SYS_BOOT",
		"SYS_CHROOT", "SYS_MODULE", "SYS_NICE", "SYS_PACCT", "SYS_PTRACE", "SYS_RAWIO", "SYS_RESOURCE",
		"SYS_TIME", "SYS_TTY_CONFIG", "SYSLOG", "WAKE_ALARM"}
	resourceTypes      = []string{"GPU", "InferenceAccelerator"}
	firelensTypes      = []string{"fluentd", "fluentbit"}
	versionConsistency = []string{"enabled", "disabled"}
)

// Validate checks td against ECS's rules and returns every problem found as a
// *ValidationError, each with the JSON path of its field, or nil. Task-level cpu and memory
// must already be integer strings here (Parse converts ECS's "1 vCPU" and "1 GB" forms).
func Validate(td *orchv1.TaskDefinition) error {
	if td == nil {
		return &ValidationError{Errors: []FieldError{{Message: "task definition is missing"}}}
	}
	v := &validator{td: td, names: map[string]int{}}
	v.task()
	if len(v.errs) == 0 {
		return nil
	}
	return &ValidationError{Errors: v.errs}
}

type validator struct {
	td    *orchv1.TaskDefinition
	errs  []FieldError
	names map[string]int // container name -> index of its first definition
	// task-level sizes; 0 when not set or not valid
	taskCPU, taskMemory int
}

func (v *validator) add(path, format string, args ...any) {
	v.errs = append(v.errs, FieldError{Path: path, Message: fmt.Sprintf(format, args...)})
}

func (v *validator) oneOf(path, val string, allowed []string) {
	if !slices.Contains(allowed, val) {
		v.add(path, "must be one of %s (got %q)", strings.Join(allowed, ", "), val)
	}
}

func (v *validator) task() {
	td := v.td
	switch {
	case td.Family == "":
		v.add("family", "required")
	case !validName(td.Family):
		v.add("family", nameRule)
	}
	if td.NetworkMode != "" {
		v.oneOf("networkMode", td.NetworkMode, networkModes)
	}
	v.taskCPU = v.positive("cpu", td.Cpu, "cpu units")
	v.taskMemory = v.positive("memory", td.Memory, "MiB")
	if td.PidMode != "" {
		v.oneOf("pidMode", td.PidMode, pidModes)
	}
	if td.IpcMode != "" {
		v.oneOf("ipcMode", td.IpcMode, ipcModes)
	}
	for i, c := range td.RequiresCompatibilities {
		v.oneOf(fmt.Sprintf("requiresCompatibilities[%d]", i), c, compatibilities)
	}
	if es := td.EphemeralStorage; es != nil && es.SizeInGiB != 0 && (es.SizeInGiB < 21 || es.SizeInGiB > 200) {
		v.add("ephemeralStorage.sizeInGiB", "must be between 21 and 200")
	}
	v.volumes()

	switch n := len(td.ContainerDefinitions); {
	case n == 0:
		v.add("containerDefinitions", "required: at least one container")
	case n > maxContainers:
		v.add("containerDefinitions", "at most %d containers (got %d)", maxContainers, n)
	}
	for i, c := range td.ContainerDefinitions {
		if c != nil && c.Name != "" {
			if _, dup := v.names[c.Name]; !dup {
				v.names[c.Name] = i
			}
		}
	}
	essential := false
	for i, c := range td.ContainerDefinitions {
		p := fmt.Sprintf("containerDefinitions[%d]", i)
		if c == nil {
			v.add(p, "must be an object")
			continue
		}
		essential = essential || Essential(c)
		v.container(p, i, c)
	}
	if len(td.ContainerDefinitions) > 0 && !essential {
		v.add("containerDefinitions", "at least one container must be essential")
	}
	v.taskSums()
	v.hostPortConflicts()
	v.dependencyCycles()
	v.placementConstraints()
	v.tags()
}

// positive reads a task-level size: empty (not set) or a positive integer.
func (v *validator) positive(path, s, unit string) int {
	if s == "" {
		return 0
	}
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 {
		v.add(path, "must be a positive integer (%s), got %q", unit, s)
		return 0
	}
	return n
}

func (v *validator) volumes() {
	seen := map[string]bool{}
	for i, vol := range v.td.Volumes {
		p := fmt.Sprintf("volumes[%d]", i)
		if vol == nil {
			v.add(p, "must be an object")
			continue
		}
		switch {
		case vol.Name == "":
			v.add(p+".name", "required")
		case !validName(vol.Name):
			v.add(p+".name", nameRule)
		case seen[vol.Name]:
			v.add(p+".name", "duplicate volume name %q", vol.Name)
		}
		seen[vol.Name] = true
		if h := vol.Host; h != nil && h.SourcePath != "" && !path.IsAbs(h.SourcePath) {
			v.add(p+".host.sourcePath", "must be an absolute path")
		}
	}
}

// taskSums checks the containers' sizes against the task's: ECS requires that no container
// exceed the task and that the containers' reservations fit in it together.
func (v *validator) taskSums() {
	var cpu, mem int
	for i, c := range v.td.ContainerDefinitions {
		if c == nil {
			continue
		}
		p := fmt.Sprintf("containerDefinitions[%d]", i)
		ccpu, cmem := ContainerReservation(c)
		cpu += ccpu
		mem += cmem
		if v.taskMemory > 0 {
			if c.Memory != nil && int(*c.Memory) > v.taskMemory {
				v.add(p+".memory", "must not exceed the task's memory (%d)", v.taskMemory)
			} else if c.MemoryReservation != nil && int(*c.MemoryReservation) > v.taskMemory {
				v.add(p+".memoryReservation", "must not exceed the task's memory (%d)", v.taskMemory)
			}
		}
	}
	if v.taskCPU > 0 && cpu > v.taskCPU {
		v.add("cpu", "must be at least the sum of the containers' cpu (%d)", cpu)
	}
	if v.taskMemory > 0 && mem > v.taskMemory {
		v.add("memory", "must be at least the sum of the containers' memory reservations (%d)", mem)
	}
}

// hostPortConflicts rejects two port mappings that would bind the same host port and
// protocol, whichever containers they belong to.
func (v *validator) hostPortConflicts() {
	type binding struct {
		port  int32
		proto string
	}
	first := map[binding]string{}
	for i, c := range v.td.ContainerDefinitions {
		if c == nil {
			continue
		}
		for j, pm := range c.PortMappings {
			if pm == nil || pm.ContainerPortRange != "" {
				continue
			}
			host, field := boundHostPort(v.td.NetworkMode, pm)
			if host <= 0 {
				continue
			}
			b := binding{host, protocolOf(pm)}
			p := fmt.Sprintf("containerDefinitions[%d].portMappings[%d]", i, j)
			if other, dup := first[b]; dup {
				v.add(p+"."+field, "host port %d/%s is already used by %s", b.port, b.proto, other)
				continue
			}
			first[b] = p
		}
	}
}

// dependencyCycles reports each dependsOn cycle once, at the container that closes it.
func (v *validator) dependencyCycles() {
	cs := v.td.ContainerDefinitions
	const (
		unvisited = iota
		active
		done
	)
	state := make([]int, len(cs))
	var stack []int
	var visit func(i int)
	visit = func(i int) {
		state[i] = active
		stack = append(stack, i)
		for _, dep := range cs[i].DependsOn {
			j, ok := v.names[dep.GetContainerName()]
			if !ok || j == i || cs[j] == nil {
				continue // reported by the container checks
			}
			switch state[j] {
			case unvisited:
				visit(j)
			case active:
				start := slices.Index(stack, j)
				var names []string
				for _, k := range stack[start:] {
					names = append(names, cs[k].Name)
				}
				names = append(names, cs[j].Name)
				v.add(fmt.Sprintf("containerDefinitions[%d].dependsOn", i), "dependency cycle: %s", strings.Join(names, " -> "))
			}
		}
		stack = stack[:len(stack)-1]
		state[i] = done
	}
	for i, c := range cs {
		if c != nil && state[i] == unvisited {
			visit(i)
		}
	}
}

func (v *validator) placementConstraints() {
	pcs := v.td.PlacementConstraints
	if len(pcs) > maxPlacementConstraints {
		v.add("placementConstraints", "at most %d constraints (got %d)", maxPlacementConstraints, len(pcs))
	}
	for i, pc := range pcs {
		p := fmt.Sprintf("placementConstraints[%d]", i)
		if pc == nil {
			v.add(p, "must be an object")
			continue
		}
		if pc.Type != "memberOf" {
			// distinctInstance is for run-task and services, not task definitions.
			v.add(p+".type", "must be memberOf (got %q)", pc.Type)
			continue
		}
		if strings.TrimSpace(pc.Expression) == "" {
			v.add(p+".expression", "required")
		}
	}
}

func (v *validator) tags() {
	tags := v.td.Tags
	if len(tags) > maxTags {
		v.add("tags", "at most %d tags (got %d)", maxTags, len(tags))
	}
	seen := map[string]bool{}
	for i, t := range tags {
		p := fmt.Sprintf("tags[%d]", i)
		if t == nil {
			v.add(p, "must be an object")
			continue
		}
		switch {
		case t.Key == "":
			v.add(p+".key", "required")
		case len(t.Key) > maxTagKey:
			v.add(p+".key", "at most %d characters", maxTagKey)
		case seen[t.Key]:
			v.add(p+".key", "duplicate tag key %q", t.Key)
		}
		seen[t.Key] = true
		if len(t.Value) > maxTagValue {
			v.add(p+".value", "at most %d characters", maxTagValue)
		}
	}
}

// boundHostPort is the host port a mapping binds and the field it comes from: hostPort when
// set; containerPort in awsvpc and host modes, where the two are the same port; none (0) for
// bridge with hostPort 0 (a dynamic port) and for none mode. The empty network mode, orch's
// default, is treated like bridge here, so that ECS's EC2 examples, written for ECS's bridge
// default, keep their meaning: a hostPort is published on the node, 0 publishes nothing.
func boundHostPort(mode string, pm *orchv1.PortMapping) (int32, string) {
	switch {
	case mode == "none":
		return 0, ""
	case pm.HostPort != 0:
		return pm.HostPort, "hostPort"
	case mode == "awsvpc" || mode == "host":
		return pm.ContainerPort, "containerPort"
	}
	return 0, ""
}

func protocolOf(pm *orchv1.PortMapping) string {
	if pm.Protocol == "" {
		return "tcp"
	}
	return pm.Protocol
}

// parsePortRange reads a containerPortRange, "8000-8010".
func parsePortRange(s string) (lo, hi int32, ok bool) {
	a, b, found := strings.Cut(s, "-")
	if !found {
		return 0, 0, false
	}
	x, err1 := strconv.Atoi(strings.TrimSpace(a))
	y, err2 := strconv.Atoi(strings.TrimSpace(b))
	if err1 != nil || err2 != nil || x < 1 || y > 65535 || x >= y {
		return 0, 0, false
	}
	return int32(x), int32(y), true
}
