package containerd

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/oci"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"orch/agent/logs"
	"orch/agent/runtime"
	orchv1 "orch/proto/orch/v1"
)

const mib = 1 << 20

// buildSpecOpts turns a container spec and its image config into OCI spec options, applied in
// order on containerd's default Linux spec.
func buildSpecOpts(spec runtime.ContainerSpec, img oci.Image, cfg ocispec.ImageConfig, initBinary string) ([]oci.SpecOpts, error) {
	def := spec.Def
	lp := def.GetLinuxParameters()

	args, err := processArgs(cfg, def.GetEntryPoint(), def.GetCommand(), spec.Command)
	if err != nil {
		return nil, err
	}
	if lp.GetInitProcessEnabled() {
		args = append([]string{initPath, "--"}, args...)
	}

	opts := []oci.SpecOpts{
		// Image env, cwd and user first; everything below overrides it.
		oci.WithImageConfig(img),
		oci.WithEnv(spec.Env),
		oci.WithProcessArgs(args...),
		// Docker (and so ECS) does not set no_new_privs unless asked to.
		oci.WithNewPrivileges,
	}
	if wd := def.GetWorkingDirectory(); wd != "" {
		opts = append(opts, oci.WithProcessCwd(wd))
	}
	if u := def.GetUser(); u != "" {
		opts = append(opts, withUser(u))
	}
	if h := spec.Hostname; h != "" {
		opts = append(opts, oci.WithHostname(h))
	} else if h := def.GetHostname(); h != "" {
		opts = append(opts, oci.WithHostname(h))
	}
	if spec.NetNSPath != "" {
		opts = append(opts, oci.WithLinuxNamespace(specs.LinuxNamespace{
			Type: specs.NetworkNamespace, Path: spec.NetNSPath,
		}))
	}
	if def.GetPrivileged() {
		opts = append(opts, oci.WithPrivileged, oci.WithHostDevices, oci.WithAllDevicesAllowed)
	}
	if def.GetReadonlyRootFilesystem() {
		opts = append(opts, oci.WithRootFSReadonly())
	}
	capOpts, err := capabilityOpts(lp.GetCapabilities())
	if err != nil {
		return nil, err
	}
	opts = append(opts, capOpts...)
	for _, d := range lp.GetDevices() {
		perms, err := devicePermissions(d.GetPermissions())
		if err != nil {
			return nil, fmt.Errorf("device %s: %w", d.GetHostPath(), err)
		}
		opts = append(opts, oci.WithDevices(d.GetHostPath(), d.GetContainerPath(), perms))
	}
	rlimits, err := rlimitsFor(def.GetUlimits())
	if err != nil {
		return nil, err
	}
	opts = append(opts, withRlimits(rlimits), withResources(spec, lp))

	mounts, err := mountsFor(spec, initBinary)
	if err != nil {
		return nil, err
	}
	if len(mounts) > 0 {
		dests := make([]string, len(mounts))
		for i, m := range mounts {
			dests[i] = m.Destination
		}
		opts = append(opts, oci.WithoutMounts(dests...), oci.WithMounts(mounts))
	}
	// After the mounts: a sharedMemorySize is applied to the default /dev/shm, unless a mount
	// replaced it.
	if n := lp.GetSharedMemorySize(); n > 0 && !hasMount(mounts, "/dev/shm") {
		opts = append(opts, oci.WithDevShmSize(int64(n)*1024))
	}
	return opts, nil
}

// processArgs applies ECS (Docker) semantics: entryPoint replaces the image ENTRYPOINT and
// command the image CMD; an entryPoint without a command drops the image CMD. A non-nil
// override replaces the definition's command.
func processArgs(cfg ocispec.ImageConfig, entryPoint, command, override []string) ([]string, error) {
	if override != nil {
		command = override
	}
	ep, cmd := cfg.Entrypoint, cfg.Cmd
	if len(entryPoint) > 0 {
		ep, cmd = entryPoint, nil
	}
	if override != nil || len(command) > 0 {
		cmd = command
	}
	args := append(append([]string{}, ep...), cmd...)
	if len(args) == 0 {
		return nil, errors.New("no entryPoint or command, and the image has neither")
	}
	return args, nil
}

// withUser sets the user like oci.WithUser (names resolved in the image's /etc/passwd and
// /etc/group) and then the user's supplementary groups, as Docker does.
func withUser(u string) oci.SpecOpts {
	return func(ctx context.Context, c oci.Client, ctr *containers.Container, s *oci.Spec) error {
		if err := oci.WithUser(u)(ctx, c, ctr, s); err != nil {
			return fmt.Errorf("user %q: %w", u, err)
		}
		uid := strconv.FormatUint(uint64(s.Process.User.UID), 10)
		if err := oci.WithAdditionalGIDs(uid)(ctx, c, ctr, s); err != nil {
			return fmt.Errorf("user %q: groups: %w", u, err)
		}
		return nil
	}
}

// capabilityOpts applies linuxParameters.capabilities: names as ECS spells them (without
// "CAP_"), "ALL" in drop starts from an empty set and "ALL" in add grants every capability.
func capabilityOpts(caps *orchv1.KernelCapabilities) ([]oci.SpecOpts, error) {
	if caps == nil {
		return nil, nil
	}
	add, addAll, err := capNames(caps.GetAdd())
	if err != nil {
		return nil, err
	}
	drop, dropAll, err := capNames(caps.GetDrop())
	if err != nil {
		return nil, err
	}
	var opts []oci.SpecOpts
	if dropAll {
		opts = append(opts, oci.WithCapabilities(nil))
	}
	if addAll {
		opts = append(opts, oci.WithAllKnownCapabilities)
	}
	if len(add) > 0 {
		opts = append(opts, oci.WithAddedCapabilities(add))
	}
	if len(drop) > 0 {
		opts = append(opts, oci.WithDroppedCapabilities(drop))
	}
	return opts, nil
}

func capNames(in []string) (names []string, all bool, err error) {
	for _, n := range in {
		n = strings.ToUpper(strings.TrimSpace(n))
		switch {
		case n == "ALL":
			all = true
		case n == "" || strings.ContainsAny(n, " \t/"):
			return nil, false, fmt.Errorf("invalid capability %q", n)
		case strings.HasPrefix(n, "CAP_"):
			names = append(names, n)
		default:
			names = append(names, "CAP_"+n)
		}
	}
	return names, all, nil
}

// devicePermissions maps ECS device permissions to cgroup access; none means all three.
func devicePermissions(perms []string) (string, error) {
	if len(perms) == 0 {
		return "rwm", nil
	}
	var r, w, m bool
	for _, p := range perms {
		switch strings.ToLower(p) {
		case "read":
			r = true
		case "write":
			w = true
		case "mknod":
			m = true
		default:
			return "", fmt.Errorf("invalid permission %q (read, write, mknod)", p)
		}
	}
	var b strings.Builder
	for _, x := range []struct {
		on bool
		c  byte
	}{{r, 'r'}, {w, 'w'}, {m, 'm'}} {
		if x.on {
			b.WriteByte(x.c)
		}
	}
	return b.String(), nil
}

// rlimitsFor maps ECS ulimits ("nofile") to OCI rlimits ("RLIMIT_NOFILE").
func rlimitsFor(ulimits []*orchv1.Ulimit) ([]specs.POSIXRlimit, error) {
	var out []specs.POSIXRlimit
	for _, u := range ulimits {
		name := strings.ToUpper(strings.TrimSpace(u.GetName()))
		if !validUlimits[name] {
			return nil, fmt.Errorf("invalid ulimit name %q", u.GetName())
		}
		if u.GetSoftLimit() < 0 || u.GetHardLimit() < 0 || u.GetSoftLimit() > u.GetHardLimit() {
			return nil, fmt.Errorf("ulimit %s: soft limit %d must be <= hard limit %d", u.GetName(),
				u.GetSoftLimit(), u.GetHardLimit())
		}
		out = append(out, specs.POSIXRlimit{
			Type: "RLIMIT_" + name,
			Soft: uint64(u.GetSoftLimit()),
			Hard: uint64(u.GetHardLimit()),
		})
	}
	return out, nil
}

// validUlimits are the names ECS accepts.
var validUlimits = map[string]bool{
	"CORE": true, "CPU": true, "DATA": true, "FSIZE": true, "LOCKS": true, "MEMLOCK": true,
	"MSGQUEUE": true, "NICE": true, "NOFILE": true, "NPROC": true, "RSS": true, "RTPRIO": true,
	"RTTIME": true, "SIGPENDING": true, "STACK": true,
}

// withRlimits replaces the default rlimits of the same type and adds the others.
func withRlimits(limits []specs.POSIXRlimit) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		for _, l := range limits {
			replaced := false
			for i := range s.Process.Rlimits {
				if s.Process.Rlimits[i].Type == l.Type {
					s.Process.Rlimits[i], replaced = l, true
				}
			}
			if !replaced {
				s.Process.Rlimits = append(s.Process.Rlimits, l)
			}
		}
		return nil
	}
}

// withResources sets cpu and memory limits. Swap follows ECS maxSwap: unset leaves the host
// default, 0 disables swap, n allows n MiB of swap on top of the memory limit.
func withResources(spec runtime.ContainerSpec, lp *orchv1.LinuxParameters) oci.SpecOpts {
	if lp == nil {
		lp = &orchv1.LinuxParameters{}
	}
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		if s.Linux.Resources == nil {
			s.Linux.Resources = &specs.LinuxResources{}
		}
		res := s.Linux.Resources
		if spec.CPUShares > 0 || spec.CPUQuota > 0 {
			if res.CPU == nil {
				res.CPU = &specs.LinuxCPU{}
			}
			if spec.CPUShares > 0 {
				shares := spec.CPUShares
				res.CPU.Shares = &shares
			}
			if spec.CPUQuota > 0 {
				quota, period := spec.CPUQuota, spec.CPUPeriod
				if period == 0 {
					period = 100000
				}
				res.CPU.Quota, res.CPU.Period = &quota, &period
			}
		}
		if spec.MemoryLimitBytes > 0 || spec.MemoryReservation > 0 || lp.Swappiness != nil {
			if res.Memory == nil {
				res.Memory = &specs.LinuxMemory{}
			}
			if l := spec.MemoryLimitBytes; l > 0 {
				res.Memory.Limit = &l
				if lp.MaxSwap != nil {
					swap := l + int64(lp.GetMaxSwap())*mib
					res.Memory.Swap = &swap
				}
			}
			if r := spec.MemoryReservation; r > 0 {
				res.Memory.Reservation = &r
			}
			if lp.Swappiness != nil {
				sw := uint64(lp.GetSwappiness())
				res.Memory.Swappiness = &sw
			}
		}
		return nil
	}
}

// mountsFor returns the bind mounts, tmpfs mounts and the init binary mount.
func mountsFor(spec runtime.ContainerSpec, initBinary string) ([]specs.Mount, error) {
	var out []specs.Mount
	for _, m := range spec.Mounts {
		if m.Source == "" || !strings.HasPrefix(m.Destination, "/") {
			return nil, fmt.Errorf("mount %q -> %q: need a source and an absolute destination",
				m.Source, m.Destination)
		}
		opt := "rw"
		if m.ReadOnly {
			opt = "ro"
		}
		out = append(out, specs.Mount{
			Destination: m.Destination, Type: "bind", Source: m.Source,
			Options: []string{"rbind", "rprivate", opt},
		})
	}
	lp := spec.Def.GetLinuxParameters()
	for _, t := range lp.GetTmpfs() {
		if !strings.HasPrefix(t.GetContainerPath(), "/") {
			return nil, fmt.Errorf("tmpfs %q: containerPath must be absolute", t.GetContainerPath())
		}
		// Docker's tmpfs defaults; the definition's mountOptions come later and win.
		opts := []string{"nosuid", "nodev", "noexec"}
		opts = append(opts, t.GetMountOptions()...)
		if t.GetSize() > 0 {
			opts = append(opts, fmt.Sprintf("size=%dm", t.GetSize()))
		}
		out = append(out, specs.Mount{
			Destination: t.GetContainerPath(), Type: "tmpfs", Source: "tmpfs", Options: opts,
		})
	}
	if lp.GetInitProcessEnabled() {
		if initBinary == "" {
			return nil, errors.New("initProcessEnabled: no init binary configured")
		}
		out = append(out, specs.Mount{
			Destination: initPath, Type: "bind", Source: initBinary,
			Options: []string{"bind", "rprivate", "ro"},
		})
	}
	return out, nil
}

func hasMount(mounts []specs.Mount, dest string) bool {
	for _, m := range mounts {
		if m.Destination == dest {
			return true
		}
	}
	return false
}

// logRotation reads Docker's json-file style options "max-size" ("10m", "512k", "1g", bytes)
// and "max-file" from logConfiguration.options; the defaults are the logs package's.
func logRotation(options map[string]string) (maxSize int64, maxFiles int, err error) {
	maxSize, maxFiles = logs.DefaultMaxSize, logs.DefaultMaxFiles
	if v, ok := options["max-size"]; ok {
		if maxSize, err = parseSize(v); err != nil || maxSize <= 0 {
			return 0, 0, fmt.Errorf("logConfiguration max-size %q: want a positive size like 10m", v)
		}
	}
	if v, ok := options["max-file"]; ok {
		if maxFiles, err = strconv.Atoi(v); err != nil || maxFiles < 1 {
			return 0, 0, fmt.Errorf("logConfiguration max-file %q: want a positive integer", v)
		}
	}
	return maxSize, maxFiles, nil
}

func parseSize(v string) (int64, error) {
	v = strings.ToLower(strings.TrimSpace(v))
	mult := int64(1)
	switch {
	case strings.HasSuffix(v, "k"):
		mult, v = 1<<10, strings.TrimSuffix(v, "k")
	case strings.HasSuffix(v, "m"):
		mult, v = 1<<20, strings.TrimSuffix(v, "m")
	case strings.HasSuffix(v, "g"):
		mult, v = 1<<30, strings.TrimSuffix(v, "g")
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, err
	}
	return n * mult, nil
}
