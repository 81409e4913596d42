package taskrunner

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"orch/agent/runtime"
	"orch/pkg/lifecycle"
	"orch/pkg/taskdef"
	orchv1 "orch/proto/orch/v1"
)

// start brings the task to RUNNING: ENI, files, images, then containers in dependsOn order.
func (r *Runner) start(ctx context.Context) error {
	if err := r.unsupported(); err != nil {
		return err
	}
	t0 := time.Now()
	if err := r.provision(ctx); err != nil {
		return err
	}
	r.advance(lifecycle.Pending)
	t1 := time.Now()
	if err := r.pull(ctx); err != nil {
		return err
	}
	t2 := time.Now()
	if err := r.startContainers(ctx); err != nil {
		return err
	}
	t3 := time.Now()
	r.advance(lifecycle.Activating)
	r.set(func(st *orchv1.TaskStatus) {
		if lifecycle.Forward(st.LastStatus, lifecycle.Running) {
			st.LastStatus = lifecycle.Running
			if st.StartedAt == nil {
				st.StartedAt = timestamppb.Now()
			}
		}
	})
	r.log.Info("task running", "ip", r.assignment().GetTask().GetEni().GetIp(),
		"network_ms", ms(t1.Sub(t0)), "pull_ms", ms(t2.Sub(t1)), "containers_ms", ms(t3.Sub(t2)),
		"create_ms", ms(r.createTime), "start_ms", ms(r.startTime))
	return nil
}

// unsupported refuses, by name, what this agent cannot do yet rather than run it wrongly.
func (r *Runner) unsupported() error {
	for _, c := range r.td.GetContainerDefinitions() {
		if len(c.GetSecrets()) > 0 {
			return fmt.Errorf("container %s: secrets are not supported by this agent yet", c.GetName())
		}
		if len(c.GetEnvironmentFiles()) > 0 {
			return fmt.Errorf("container %s: environmentFiles are not supported by this agent yet", c.GetName())
		}
		for _, d := range c.GetDependsOn() {
			if d.GetCondition() == "HEALTHY" {
				return fmt.Errorf("container %s: dependsOn condition HEALTHY needs health checks, which this agent does not run yet", c.GetName())
			}
		}
	}
	return nil
}

func (r *Runner) provision(ctx context.Context) error {
	e := r.assignment().GetTask().GetEni()
	if e == nil {
		return errors.New("task has no ENI")
	}
	gw := fmt.Sprintf("%s/%d", e.GetGateway(), e.GetPrefixLen())
	if err := r.cfg.Network.EnsureBridge(ctx, e.GetBridge(), gw, e.GetSubnet()); err != nil {
		return fmt.Errorf("bridge %s: %w", e.GetBridge(), err)
	}
	path, err := r.cfg.Network.Setup(ctx, r.eniSpec())
	if err != nil {
		return fmt.Errorf("ENI %s: %w", e.GetIp(), err)
	}
	r.netnsPath = path
	return r.writeFiles()
}

func (r *Runner) hostname() string {
	a := r.assignment()
	ip, err := netip.ParseAddr(a.GetTask().GetEni().GetIp())
	if err != nil {
		return a.GetTask().GetId()[:12]
	}
	return "ip-" + strings.ReplaceAll(ip.String(), ".", "-")
}

// writeFiles makes the task's /etc/hosts, /etc/hostname and /etc/resolv.conf and its
// task-scoped volumes.
func (r *Runner) writeFiles() error {
	dir := r.cfg.TaskDir
	if err := os.MkdirAll(filepath.Join(dir, "volumes"), 0o755); err != nil {
		return err
	}
	var hosts strings.Builder
	hosts.WriteString("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
	fmt.Fprintf(&hosts, "%s\t%s\n", r.assignment().GetTask().GetEni().GetIp(), r.hostname())
	for _, c := range r.td.GetContainerDefinitions() {
		for _, h := range c.GetExtraHosts() {
			fmt.Fprintf(&hosts, "%s\t%s\n", h.GetIpAddress(), h.GetHostname())
		}
	}
	resolv := r.cfg.ResolvConf
	var dns []string
	for _, c := range r.td.GetContainerDefinitions() {
		dns = append(dns, c.GetDnsServers()...)
	}
	if len(dns) > 0 {
		var b strings.Builder
		for _, s := range dns {
			fmt.Fprintf(&b, "nameserver %s\n", s)
		}
		resolv = []byte(b.String())
	}
	files := map[string][]byte{"hosts": []byte(hosts.String()), "hostname": []byte(r.hostname() + "\n"), "resolv.conf": resolv}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			return err
		}
	}
	for _, v := range r.td.GetVolumes() {
		if v.GetHost().GetSourcePath() == "" {
			if err := os.MkdirAll(filepath.Join(dir, "volumes", v.GetName()), 0o777); err != nil {
				return err
			}
		}
	}
	return nil
}

func (r *Runner) pull(ctx context.Context) error {
	r.set(func(st *orchv1.TaskStatus) {
		if st.PullStartedAt == nil {
			st.PullStartedAt = timestamppb.Now()
		}
	})
	seen := map[string]bool{}
	for _, c := range r.containers {
		img := c.def.GetImage()
		// A container that already ran (adoption) needs no image: a registry that is down, or
		// an image removed since, must not stop a task that is running.
		if c.started || seen[img] {
			continue
		}
		seen[img] = true
		if _, err := r.cfg.Runtime.Pull(ctx, img); err != nil {
			return fmt.Errorf("CannotPullContainerError: %s: %w", img, err)
		}
	}
	r.set(func(st *orchv1.TaskStatus) {
		if st.PullStoppedAt == nil {
			st.PullStoppedAt = timestamppb.Now()
		}
	})
	return nil
}

// startContainers starts every container once its dependencies allow, adopting the ones the
// runtime already has.
func (r *Runner) startContainers(ctx context.Context) error {
	for _, c := range r.containers {
		if err := r.adopt(ctx, c); err != nil {
			return err
		}
	}
	for _, c := range r.containers {
		if c.started && (c.exit != nil || c.lost) && taskdef.Essential(c.def) {
			return &errStop{code: lifecycle.EssentialContainerExited, reason: "Essential container in task exited"}
		}
	}
	for {
		pending, progressed := 0, false
		for _, c := range r.containers {
			if c.started {
				continue
			}
			pending++
			ok, err := r.depsMet(c)
			if err != nil {
				return err
			}
			if !ok {
				continue
			}
			if err := r.createAndStart(ctx, c); err != nil {
				return err
			}
			progressed = true
		}
		if pending == 0 {
			return nil
		}
		if progressed {
			continue
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case ev := <-r.exits:
			if s := r.recordExit(ev); s != nil {
				return s
			}
		case <-r.wake:
			if r.stopWanted() {
				return &errStop{}
			}
		}
	}
}

// adopt matches a container with what the runtime has (after an agent restart).
func (r *Runner) adopt(ctx context.Context, c *container) error {
	info, ok := r.cfg.Existing[c.def.GetName()]
	switch {
	case !ok && c.started && c.exit == nil:
		r.set(func(*orchv1.TaskStatus) { c.lost = true })
	case !ok:
	case info.State == runtime.StateRunning:
		c.started = true
		return r.watchExit(ctx, c)
	case info.State == runtime.StateStopped:
		c.started = true
		st := runtime.ExitStatus{Code: 255}
		if info.Exit != nil {
			st = *info.Exit
		}
		r.set(func(*orchv1.TaskStatus) { c.exit = &st })
	case info.State == runtime.StateCreated:
		// Created by an agent that died before starting it: start it now.
		if err := r.watchExit(ctx, c); err != nil {
			return err
		}
		if _, err := r.cfg.Runtime.Start(ctx, c.id); err != nil {
			return fmt.Errorf("container %s: start: %w", c.def.GetName(), err)
		}
		r.set(func(*orchv1.TaskStatus) { c.started = true })
	}
	return nil
}

// depsMet checks a container's dependsOn conditions.
func (r *Runner) depsMet(c *container) (bool, error) {
	for _, d := range c.def.GetDependsOn() {
		dep := r.byName[d.GetContainerName()]
		if dep == nil {
			return false, fmt.Errorf("container %s: depends on unknown container %s", c.def.GetName(), d.GetContainerName())
		}
		switch d.GetCondition() {
		case "START":
			if !dep.started {
				return false, nil
			}
		case "COMPLETE":
			if dep.exit == nil && !dep.lost {
				return false, nil
			}
		case "SUCCESS":
			if dep.exit == nil && !dep.lost {
				return false, nil
			}
			if dep.lost || dep.exit.Code != 0 {
				code := int32(-1)
				if dep.exit != nil {
					code = dep.exit.Code
				}
				return false, fmt.Errorf("dependency condition SUCCESS of container %s not met: container %s exited with %d",
					c.def.GetName(), dep.def.GetName(), code)
			}
		default:
			return false, fmt.Errorf("container %s: dependsOn condition %q is not supported", c.def.GetName(), d.GetCondition())
		}
	}
	return true, nil
}

func (r *Runner) createAndStart(ctx context.Context, c *container) error {
	spec, err := r.spec(c)
	if err != nil {
		return err
	}
	t0 := time.Now()
	if err := r.cfg.Runtime.Create(ctx, spec); err != nil {
		return fmt.Errorf("CannotCreateContainerError: container %s: %w", c.def.GetName(), err)
	}
	t1 := time.Now()
	r.createTime += t1.Sub(t0)
	if err := r.watchExit(ctx, c); err != nil {
		return err
	}
	if _, err := r.cfg.Runtime.Start(ctx, c.id); err != nil {
		return fmt.Errorf("CannotStartContainerError: container %s: %w", c.def.GetName(), err)
	}
	r.startTime += time.Since(t1)
	r.set(func(*orchv1.TaskStatus) { c.started = true })
	return nil
}

// spec resolves a container definition into what the runtime needs.
func (r *Runner) spec(c *container) (runtime.ContainerSpec, error) {
	t := r.assignment().GetTask()
	def := c.def
	env := make([]string, 0, len(def.GetEnvironment())+2)
	for _, kv := range def.GetEnvironment() {
		env = append(env, kv.GetName()+"="+kv.GetValue())
	}
	labels := map[string]string{}
	for k, v := range def.GetDockerLabels() {
		labels[k] = v
	}
	labels[runtime.LabelTaskID] = t.GetId()
	labels[runtime.LabelContainer] = def.GetName()
	labels[runtime.LabelCluster] = t.GetCluster()

	mounts := []runtime.Mount{
		{Source: filepath.Join(r.cfg.TaskDir, "hosts"), Destination: "/etc/hosts"},
		{Source: filepath.Join(r.cfg.TaskDir, "hostname"), Destination: "/etc/hostname"},
		{Source: filepath.Join(r.cfg.TaskDir, "resolv.conf"), Destination: "/etc/resolv.conf"},
	}
	vols := map[string]*orchv1.Volume{}
	for _, v := range r.td.GetVolumes() {
		vols[v.GetName()] = v
	}
	for _, mp := range def.GetMountPoints() {
		v := vols[mp.GetSourceVolume()]
		if v == nil {
			return runtime.ContainerSpec{}, fmt.Errorf("container %s: mountPoints: no volume %q", def.GetName(), mp.GetSourceVolume())
		}
		src := v.GetHost().GetSourcePath()
		if src == "" {
			src = filepath.Join(r.cfg.TaskDir, "volumes", v.GetName())
		} else if err := os.MkdirAll(src, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return runtime.ContainerSpec{}, fmt.Errorf("container %s: volume %s: %w", def.GetName(), v.GetName(), err)
		}
		mounts = append(mounts, runtime.Mount{Source: src, Destination: mp.GetContainerPath(), ReadOnly: mp.GetReadOnly()})
	}
	spec := runtime.ContainerSpec{
		ID: c.id, TaskID: t.GetId(), Def: def, Env: env, NetNSPath: r.netnsPath, Hostname: r.hostname(),
		Mounts: mounts, LogDir: r.cfg.LogDir, Labels: labels,
	}
	if cpu := def.GetCpu(); cpu > 0 {
		spec.CPUShares = uint64(max(cpu, 2))
	}
	if def.Memory != nil {
		spec.MemoryLimitBytes = int64(def.GetMemory()) << 20
	} else if m := taskMemory(r.td); m > 0 {
		spec.MemoryLimitBytes = int64(m) << 20
	}
	if def.MemoryReservation != nil {
		spec.MemoryReservation = int64(def.GetMemoryReservation()) << 20
	}
	if cpu := taskCPU(r.td); cpu > 0 {
		// The task-level cpu is a hard limit in ECS; each container is held to it.
		spec.CPUPeriod = 100000
		spec.CPUQuota = int64(cpu) * 100000 / 1024
	}
	return spec, nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func taskMemory(td *orchv1.TaskDefinition) int {
	var n int
	fmt.Sscan(td.GetMemory(), &n)
	return n
}

func taskCPU(td *orchv1.TaskDefinition) int {
	var n int
	fmt.Sscan(td.GetCpu(), &n)
	return n
}
