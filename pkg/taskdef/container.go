package taskdef

import (
	"fmt"
	"path"
	"slices"
	"strings"

	orchv1 "orch/proto/orch/v1"
)

// container checks one container definition; p is its path, i its index.
func (v *validator) container(p string, i int, c *orchv1.ContainerDefinition) {
	switch first := v.names[c.Name]; {
	case c.Name == "":
		v.add(p+".name", "required")
	case !validName(c.Name):
		v.add(p+".name", nameRule)
	case first != i:
		v.add(p+".name", "duplicate container name %q (also containerDefinitions[%d])", c.Name, first)
	}
	if strings.TrimSpace(c.Image) == "" {
		v.add(p+".image", "required")
	}
	if c.Cpu < 0 {
		v.add(p+".cpu", "must not be negative")
	}
	v.memory(p, c)
	if rc := c.RepositoryCredentials; rc != nil && rc.CredentialsParameter == "" {
		v.add(p+".repositoryCredentials.credentialsParameter", "required")
	}
	v.links(p, i, c)
	v.portMappings(p, c)
	for j, e := range c.Environment {
		if e.GetName() == "" {
			v.add(fmt.Sprintf("%s.environment[%d].name", p, j), "required")
		}
	}
	for j, f := range c.EnvironmentFiles {
		if f.GetValue() == "" {
			v.add(fmt.Sprintf("%s.environmentFiles[%d].value", p, j), "required")
		}
	}
	v.secrets(p+".secrets", c.Secrets)
	v.mountPoints(p, c)
	v.volumesFrom(p, i, c)
	v.dependsOn(p, i, c)
	v.healthCheck(p+".healthCheck", c.HealthCheck)
	v.ulimits(p, c)
	v.linuxParameters(p+".linuxParameters", c.LinuxParameters)
	if lc := c.LogConfiguration; lc != nil {
		if lc.LogDriver == "" {
			v.add(p+".logConfiguration.logDriver", "required")
		}
		v.secrets(p+".logConfiguration.secretOptions", lc.SecretOptions)
	}
	if c.StopTimeout != nil && (*c.StopTimeout < 0 || *c.StopTimeout > maxStopTimeout) {
		v.add(p+".stopTimeout", "must be between 0 and %d seconds", maxStopTimeout)
	}
	if c.StartTimeout != nil && *c.StartTimeout < 0 {
		v.add(p+".startTimeout", "must not be negative")
	}
	for j, h := range c.ExtraHosts {
		hp := fmt.Sprintf("%s.extraHosts[%d]", p, j)
		if h.GetHostname() == "" {
			v.add(hp+".hostname", "required")
		}
		if h.GetIpAddress() == "" {
			v.add(hp+".ipAddress", "required")
		}
	}
	for j, sc := range c.SystemControls {
		if sc.GetNamespace() == "" {
			v.add(fmt.Sprintf("%s.systemControls[%d].namespace", p, j), "required")
		}
	}
	for j, r := range c.ResourceRequirements {
		rp := fmt.Sprintf("%s.resourceRequirements[%d]", p, j)
		v.oneOf(rp+".type", r.GetType(), resourceTypes)
		if r.GetValue() == "" {
			v.add(rp+".value", "required")
		}
	}
	if fc := c.FirelensConfiguration; fc != nil {
		v.oneOf(p+".firelensConfiguration.type", fc.Type, firelensTypes)
	}
	if rp := c.RestartPolicy; rp != nil {
		if n := rp.RestartAttemptPeriod; n != 0 && (n < 60 || n > 1800) {
			v.add(p+".restartPolicy.restartAttemptPeriod", "must be between 60 and 1800 seconds")
		}
		if len(rp.IgnoredExitCodes) > 50 {
			v.add(p+".restartPolicy.ignoredExitCodes", "at most 50 exit codes")
		}
	}
	if c.VersionConsistency != "" {
		v.oneOf(p+".versionConsistency", c.VersionConsistency, versionConsistency)
	}
}

func (v *validator) memory(p string, c *orchv1.ContainerDefinition) {
	if c.Memory != nil && *c.Memory < minContainerMemoryMiB {
		v.add(p+".memory", "must be at least %d MiB", minContainerMemoryMiB)
	}
	if c.MemoryReservation != nil && *c.MemoryReservation < minContainerMemoryMiB {
		v.add(p+".memoryReservation", "must be at least %d MiB", minContainerMemoryMiB)
	}
	if c.Memory != nil && c.MemoryReservation != nil && *c.Memory <= *c.MemoryReservation {
		v.add(p+".memory", "must be greater than memoryReservation (%d)", *c.MemoryReservation)
	}
	if c.Memory == nil && c.MemoryReservation == nil && v.td.Memory == "" {
		v.add(p+".memory", "required: set memory or memoryReservation, or the task's memory")
	}
}

// links name other containers, "name" or "name:alias"; ECS has them in bridge mode only. The
// empty network mode (orch's default) takes them too, since ECS's own bridge-default examples
// use them; containers of an orch task share one network namespace anyway.
func (v *validator) links(p string, i int, c *orchv1.ContainerDefinition) {
	if len(c.Links) == 0 {
		return
	}
	if mode := v.td.NetworkMode; mode != "" && mode != "bridge" {
		v.add(p+".links", "not supported in %s network mode", mode)
		return
	}
	for j, l := range c.Links {
		lp := fmt.Sprintf("%s.links[%d]", p, j)
		name, _, _ := strings.Cut(l, ":")
		switch target, ok := v.names[name]; {
		case name == "":
			v.add(lp, "required")
		case !ok:
			v.add(lp, "no container named %q", name)
		case target == i:
			v.add(lp, "a container cannot link to itself")
		}
	}
}

func (v *validator) portMappings(p string, c *orchv1.ContainerDefinition) {
	mode := v.td.NetworkMode
	if mode == "none" && len(c.PortMappings) > 0 {
		v.add(p+".portMappings", "not allowed in none network mode")
		return
	}
	for j, pm := range c.PortMappings {
		pp := fmt.Sprintf("%s.portMappings[%d]", p, j)
		if pm == nil {
			v.add(pp, "must be an object")
			continue
		}
		if pm.ContainerPortRange != "" {
			if _, _, ok := parsePortRange(pm.ContainerPortRange); !ok {
				v.add(pp+".containerPortRange", "must be a range such as 8000-8010 within 1-65535")
			}
			if pm.ContainerPort != 0 {
				v.add(pp+".containerPort", "must not be set with containerPortRange")
			}
			if pm.HostPort != 0 {
				v.add(pp+".hostPort", "must not be set with containerPortRange")
			}
		} else if pm.ContainerPort < 1 || pm.ContainerPort > 65535 {
			v.add(pp+".containerPort", "must be between 1 and 65535")
		}
		if pm.HostPort < 0 || pm.HostPort > 65535 {
			v.add(pp+".hostPort", "must be between 0 and 65535")
		} else if (mode == "awsvpc" || mode == "host") && pm.HostPort != 0 && pm.HostPort != pm.ContainerPort && pm.ContainerPortRange == "" {
			v.add(pp+".hostPort", "must be 0 or equal to containerPort (%d) in %s network mode", pm.ContainerPort, mode)
		}
		if pm.Protocol != "" {
			v.oneOf(pp+".protocol", pm.Protocol, protocols)
		}
	}
}

func (v *validator) secrets(p string, secrets []*orchv1.Secret) {
	for j, s := range secrets {
		sp := fmt.Sprintf("%s[%d]", p, j)
		if s.GetName() == "" {
			v.add(sp+".name", "required")
		}
		if s.GetValueFrom() == "" {
			v.add(sp+".valueFrom", "required")
		}
	}
}

func (v *validator) mountPoints(p string, c *orchv1.ContainerDefinition) {
	for j, mp := range c.MountPoints {
		mpp := fmt.Sprintf("%s.mountPoints[%d]", p, j)
		switch src := mp.GetSourceVolume(); {
		case src == "":
			v.add(mpp+".sourceVolume", "required")
		case !slices.ContainsFunc(v.td.Volumes, func(vol *orchv1.Volume) bool { return vol.GetName() == src }):
			v.add(mpp+".sourceVolume", "no volume named %q in volumes", src)
		}
		switch cp := mp.GetContainerPath(); {
		case cp == "":
			v.add(mpp+".containerPath", "required")
		case !path.IsAbs(cp):
			v.add(mpp+".containerPath", "must be an absolute path")
		}
	}
}

func (v *validator) volumesFrom(p string, i int, c *orchv1.ContainerDefinition) {
	for j, vf := range c.VolumesFrom {
		vp := fmt.Sprintf("%s.volumesFrom[%d].sourceContainer", p, j)
		switch target, ok := v.names[vf.GetSourceContainer()]; {
		case vf.GetSourceContainer() == "":
			v.add(vp, "required")
		case !ok:
			v.add(vp, "no container named %q", vf.GetSourceContainer())
		case target == i:
			v.add(vp, "a container cannot mount its own volumes")
		}
	}
}

func (v *validator) dependsOn(p string, i int, c *orchv1.ContainerDefinition) {
	for j, dep := range c.DependsOn {
		dp := fmt.Sprintf("%s.dependsOn[%d]", p, j)
		name := dep.GetContainerName()
		target, ok := v.names[name]
		switch {
		case name == "":
			v.add(dp+".containerName", "required")
		case !ok:
			v.add(dp+".containerName", "no container named %q", name)
		case target == i:
			v.add(dp+".containerName", "a container cannot depend on itself")
		}
		cond := dep.GetCondition()
		if cond == "" {
			v.add(dp+".condition", "required")
			continue
		}
		v.oneOf(dp+".condition", cond, conditions)
		if !ok || target == i {
			continue
		}
		t := v.td.ContainerDefinitions[target]
		switch cond {
		case "COMPLETE", "SUCCESS":
			if Essential(t) {
				v.add(dp+".condition", "%s cannot be used on essential container %q", cond, name)
			}
		case "HEALTHY":
			if !hasHealthCheck(t) {
				v.add(dp+".condition", "HEALTHY needs a healthCheck on container %q", name)
			}
		}
	}
}

func hasHealthCheck(c *orchv1.ContainerDefinition) bool {
	cmd := c.GetHealthCheck().GetCommand()
	return len(cmd) > 0 && cmd[0] != "NONE"
}

func (v *validator) healthCheck(p string, hc *orchv1.HealthCheck) {
	if hc == nil {
		return
	}
	switch {
	case len(hc.Command) == 0:
		v.add(p+".command", "required")
	case !slices.Contains(healthCheckKinds, hc.Command[0]):
		v.add(p+".command[0]", "must be CMD, CMD-SHELL or NONE (got %q)", hc.Command[0])
	case hc.Command[0] != "NONE" && len(hc.Command) < 2:
		v.add(p+".command", "%s must be followed by the command to run", hc.Command[0])
	}
	// Zero means "use the default", as ECS fills in interval 30, timeout 5, retries 3.
	for _, f := range []struct {
		name    string
		val     int32
		min     int32
		max     int32
		zeroOK  bool
		seconds bool
	}{
		{"interval", hc.Interval, 5, 300, true, true},
		{"timeout", hc.Timeout, 2, 60, true, true},
		{"retries", hc.Retries, 1, 10, true, false},
		{"startPeriod", hc.StartPeriod, 0, 300, true, true},
	} {
		if f.zeroOK && f.val == 0 {
			continue
		}
		if f.val < f.min || f.val > f.max {
			unit := ""
			if f.seconds {
				unit = " seconds"
			}
			v.add(p+"."+f.name, "must be between %d and %d%s", f.min, f.max, unit)
		}
	}
}

func (v *validator) ulimits(p string, c *orchv1.ContainerDefinition) {
	seen := map[string]bool{}
	// -1 means unlimited, as Docker and ECS examples (memlock) use it.
	limit := func(n int32) int64 {
		if n == -1 {
			return 1 << 62
		}
		return int64(n)
	}
	for j, u := range c.Ulimits {
		up := fmt.Sprintf("%s.ulimits[%d]", p, j)
		switch name := u.GetName(); {
		case !slices.Contains(ulimitNames, name):
			v.add(up+".name", "must be one of %s (got %q)", strings.Join(ulimitNames, ", "), name)
		case seen[name]:
			v.add(up+".name", "duplicate ulimit %q", name)
		}
		seen[u.GetName()] = true
		bad := false
		if u.GetSoftLimit() < -1 {
			v.add(up+".softLimit", "must be -1 (unlimited) or more")
			bad = true
		}
		if u.GetHardLimit() < -1 {
			v.add(up+".hardLimit", "must be -1 (unlimited) or more")
			bad = true
		}
		if !bad && limit(u.GetSoftLimit()) > limit(u.GetHardLimit()) {
			v.add(up+".softLimit", "must not exceed hardLimit (%d)", u.GetHardLimit())
		}
	}
}

func (v *validator) linuxParameters(p string, lp *orchv1.LinuxParameters) {
	if lp == nil {
		return
	}
	if caps := lp.Capabilities; caps != nil {
		for _, set := range []struct {
			field string
			names []string
		}{{"add", caps.Add}, {"drop", caps.Drop}} {
			for j, name := range set.names {
				if !validCapability(name) {
					v.add(fmt.Sprintf("%s.capabilities.%s[%d]", p, set.field, j), "unknown capability %q", name)
				}
			}
		}
	}
	for j, d := range lp.Devices {
		dp := fmt.Sprintf("%s.devices[%d]", p, j)
		switch hp := d.GetHostPath(); {
		case hp == "":
			v.add(dp+".hostPath", "required")
		case !path.IsAbs(hp):
			v.add(dp+".hostPath", "must be an absolute path")
		}
		if cp := d.GetContainerPath(); cp != "" && !path.IsAbs(cp) {
			v.add(dp+".containerPath", "must be an absolute path")
		}
		for k, perm := range d.GetPermissions() {
			v.oneOf(fmt.Sprintf("%s.permissions[%d]", dp, k), perm, devicePerms)
		}
	}
	for j, t := range lp.Tmpfs {
		tp := fmt.Sprintf("%s.tmpfs[%d]", p, j)
		switch cp := t.GetContainerPath(); {
		case cp == "":
			v.add(tp+".containerPath", "required")
		case !path.IsAbs(cp):
			v.add(tp+".containerPath", "must be an absolute path")
		}
		if t.GetSize() <= 0 {
			v.add(tp+".size", "must be greater than 0 (MiB)")
		}
	}
	if lp.SharedMemorySize < 0 {
		v.add(p+".sharedMemorySize", "must not be negative")
	}
	if lp.MaxSwap != nil && *lp.MaxSwap < 0 {
		v.add(p+".maxSwap", "must not be negative")
	}
	if lp.Swappiness != nil && (*lp.Swappiness < 0 || *lp.Swappiness > 100) {
		v.add(p+".swappiness", "must be between 0 and 100")
	}
}

// validCapability accepts ECS's names, with or without the kernel's CAP_ prefix, in any case
// (Docker takes both).
func validCapability(name string) bool {
	n := strings.ToUpper(name)
	n = strings.TrimPrefix(n, "CAP_")
	return slices.Contains(capabilityNames, n)
}
