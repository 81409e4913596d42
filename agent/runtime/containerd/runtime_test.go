package containerd

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"

	"orch/agent/runtime"
	orchv1 "orch/proto/orch/v1"
	"orch/test/harness"
)

// TestRuntime runs every integration case against one private containerd and registry. The
// pulls come first; the other cases run in parallel.
func TestRuntime(t *testing.T) {
	e := newEnv(t)
	t.Run("pull", func(t *testing.T) { testPull(t, e) })
	cases := []struct {
		name string
		fn   func(*testing.T, *env)
	}{
		{"exit-code-and-logs", testExitCode},
		{"args-env-workdir-user", testSemantics},
		{"oom-killed", testOOM},
		{"stop", testStop},
		{"readonly-rootfs", testReadonlyRootfs},
		{"capabilities", testCapabilities},
		{"devices-tmpfs-ulimits-init", testLinuxParameters},
		{"netns-hostname-mounts", testNetNSAndMounts},
		{"labels-list", testList},
		{"adoption", testAdoption},
		{"delete", testDelete},
		{"stats", testStats},
		{"create-errors", testCreateErrors},
		{"stop-signal-label", testStopSignalLabel},
	}
	t.Run("group", func(t *testing.T) {
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				tc.fn(t, e)
			})
		}
	})
}

func testPull(t *testing.T, e *env) {
	ctx := testCtx(t)
	for name, ref := range e.images {
		// Concurrent first pulls of one ref share one registry pull.
		var wg sync.WaitGroup
		results := make([]runtime.PullResult, 3)
		errs := make([]error, 3)
		for i := range results {
			wg.Add(1)
			go func() {
				defer wg.Done()
				results[i], errs[i] = e.rt.Pull(ctx, ref)
			}()
		}
		wg.Wait()
		pulled := false
		for i, r := range results {
			if errs[i] != nil {
				t.Fatalf("Pull %s (%s): %v", name, ref, errs[i])
			}
			if !strings.HasPrefix(r.Digest, "sha256:") || r.Digest != results[0].Digest {
				t.Fatalf("Pull %s: digest %q, first %q", name, r.Digest, results[0].Digest)
			}
			pulled = pulled || r.Pulled
		}
		if !pulled {
			t.Fatalf("first Pull %s: Pulled = false for every caller", name)
		}
		again, err := e.rt.Pull(ctx, ref)
		if err != nil {
			t.Fatalf("second Pull %s: %v", name, err)
		}
		if again.Pulled || again.Digest != results[0].Digest {
			t.Fatalf("second Pull %s = %+v, want Pulled=false digest %s", name, again, results[0].Digest)
		}
		// The image's unpacked layers removed behind the agent's back (its cache still knows
		// the image): the next Pull unpacks them again from the content store.
		nctx := e.rt.ctx(ctx)
		normalized, err := normalizeRef(ref)
		if err != nil {
			t.Fatal(err)
		}
		img, err := e.rt.client.GetImage(nctx, normalized)
		if err != nil {
			t.Fatal(err)
		}
		info, err := e.rt.images.get(nctx, img)
		if err != nil {
			t.Fatal(err)
		}
		sn := e.rt.client.SnapshotService(snapshotter)
		if err := sn.Remove(nctx, info.chain); err != nil {
			t.Fatalf("remove the top layer snapshot of %s: %v", name, err)
		}
		if r, err := e.rt.Pull(ctx, ref); err != nil || r.Pulled {
			t.Fatalf("Pull %s after its snapshot was removed = %+v, %v; want unpacked again without the registry",
				name, r, err)
		}
		if _, err := sn.Stat(nctx, info.chain); err != nil {
			t.Fatalf("Pull %s did not unpack it again: %v", name, err)
		}
	}
	if _, err := e.rt.Pull(ctx, "127.0.0.1:1/nothing/here:latest"); err == nil {
		t.Fatalf("Pull from a closed port succeeded")
	}
}

func testExitCode(t *testing.T, e *env) {
	spec := e.spec(t, "sh", "-c", "echo hello stdout; echo hello stderr >&2; exit 3")
	st, out := e.run(t, spec)
	if st.Code != 3 || st.OOMKilled {
		t.Fatalf("exit = %+v, want code 3, not OOM", st)
	}
	if st.At.IsZero() || time.Since(st.At) > time.Minute {
		t.Fatalf("exit time %v", st.At)
	}
	for _, want := range []string{"hello stdout", "hello stderr"} {
		if !strings.Contains(out, want) {
			t.Fatalf("log lacks %q:\n%s", want, out)
		}
	}
	// Waiting again on the exited container gives the same status.
	if st2 := waitExit(t, mustWait(t, e, spec.ID), 5*time.Second); st2.Code != 3 {
		t.Fatalf("second Wait = %+v", st2)
	}
}

func mustWait(t *testing.T, e *env, id string) <-chan runtime.ExitStatus {
	t.Helper()
	ch, err := e.rt.Wait(testCtx(t), id)
	if err != nil {
		t.Fatalf("Wait %s: %v", id, err)
	}
	return ch
}

// testSemantics checks ECS entryPoint/command/environment/workingDirectory/user against an
// image with ENTRYPOINT ["/bin/echo","img-ep"], CMD ["img-cmd"], ENV A=img B=img,
// WORKDIR /tmp and USER nobody.
func testSemantics(t *testing.T, e *env) {
	show := []string{"sh", "-c", `echo "A=$A B=$B C=$C"; echo "cwd=$(pwd)"; echo "uid=$(id -u) gid=$(id -g)"`}
	cases := []struct {
		name       string
		entryPoint []string
		command    []string
		override   []string
		env        []string
		workdir    string
		user       string
		want       []string
	}{
		{name: "image-defaults", want: []string{"img-ep img-cmd"}},
		{name: "command-replaces-cmd", command: []string{"def-cmd"}, want: []string{"img-ep def-cmd"}},
		{name: "entrypoint-drops-cmd", entryPoint: []string{"/bin/echo", "def-ep"}, want: []string{"def-ep\n"}},
		{name: "entrypoint-and-command", entryPoint: []string{"/bin/echo", "def-ep"}, command: []string{"x", "y"},
			want: []string{"def-ep x y"}},
		{name: "override-beats-command", command: []string{"def-cmd"}, override: []string{"run-task"},
			want: []string{"img-ep run-task"}},
		{name: "env-workdir-image-user", entryPoint: show, env: []string{"B=spec", "C=c"},
			want: []string{"A=img B=spec C=c", "cwd=/tmp", "uid=65534 gid=65534"}},
		{name: "workdir-and-uid", entryPoint: show, workdir: "/var/www", user: "0",
			want: []string{"cwd=/var/www", "uid=0 gid=0"}},
		{name: "uid-gid", entryPoint: show, user: "1234:4321", want: []string{"uid=1234 gid=4321"}},
		{name: "name", entryPoint: show, user: "root", want: []string{"uid=0 gid=0"}},
		{name: "name-group", entryPoint: show, user: "nobody:root", want: []string{"uid=65534 gid=0"}},
		{name: "uid-group", entryPoint: show, user: "0:nogroup", want: []string{"uid=0 gid=65534"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			spec := e.spec(t)
			spec.Def.Image = e.images["semantics"]
			spec.Def.EntryPoint, spec.Def.Command = tc.entryPoint, tc.command
			spec.Def.WorkingDirectory, spec.Def.User = tc.workdir, tc.user
			spec.Command, spec.Env = tc.override, tc.env
			st, out := e.run(t, spec)
			if st.Code != 0 {
				t.Fatalf("exit %d, log:\n%s", st.Code, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("log lacks %q:\n%s", w, out)
				}
			}
		})
	}
}

func testOOM(t *testing.T, e *env) {
	spec := e.spec(t, "sh", "-c", "tail /dev/zero")
	spec.MemoryLimitBytes = 16 << 20
	st, _ := e.run(t, spec)
	if st.Code != 137 || !st.OOMKilled {
		t.Fatalf("exit = %+v, want code 137 and OOMKilled", st)
	}
	infos, err := e.rt.List(testCtx(t))
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	for _, info := range infos {
		if info.ID == spec.ID && (info.Exit == nil || !info.Exit.OOMKilled || info.Exit.Code != 137) {
			t.Fatalf("List: %+v exit %+v, want OOMKilled code 137", info, info.Exit)
		}
	}
}

func testStop(t *testing.T, e *env) {
	cases := []struct {
		name     string
		script   string
		timeout  time.Duration
		wantCode int32
		minTime  time.Duration
		maxTime  time.Duration
	}{
		{"exits-on-term", `trap "echo got TERM; exit 0" TERM; echo ready; while :; do sleep 0.1; done`,
			10 * time.Second, 0, 0, 5 * time.Second},
		{"traps-term-killed-after-timeout", `trap "echo ignoring TERM" TERM; echo ready; while :; do sleep 0.1; done`,
			1500 * time.Millisecond, 137, 1500 * time.Millisecond, 10 * time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			spec := e.spec(t, "sh", "-c", tc.script)
			e.create(t, spec)
			ch := e.start(t, spec.ID)
			e.output(t, spec, "ready") // the trap is set
			start := time.Now()
			if err := e.rt.Stop(testCtx(t), spec.ID, tc.timeout); err != nil {
				t.Fatalf("Stop: %v", err)
			}
			took := time.Since(start)
			if took < tc.minTime || took > tc.maxTime {
				t.Fatalf("Stop took %v, want %v..%v", took, tc.minTime, tc.maxTime)
			}
			if st := waitExit(t, ch, 5*time.Second); st.Code != tc.wantCode {
				t.Fatalf("exit = %+v, want code %d", st, tc.wantCode)
			}
			// Stopping a stopped container succeeds at once.
			if err := e.rt.Stop(testCtx(t), spec.ID, time.Minute); err != nil {
				t.Fatalf("second Stop: %v", err)
			}
		})
	}
	t.Run("created-never-started", func(t *testing.T) {
		t.Parallel()
		spec := e.spec(t, "sleep", "100")
		e.create(t, spec)
		if err := e.rt.Stop(testCtx(t), spec.ID, time.Minute); err != nil {
			t.Fatalf("Stop: %v", err)
		}
	})
	t.Run("missing", func(t *testing.T) {
		if err := e.rt.Stop(testCtx(t), e.id("no-such-container"), time.Second); err != nil {
			t.Fatalf("Stop of a missing container: %v", err)
		}
	})
}

func testReadonlyRootfs(t *testing.T, e *env) {
	spec := e.spec(t, "sh", "-c", `touch /rootfs-file && echo rootfs-writable; touch /scratch/f && echo scratch-writable`)
	spec.Def.ReadonlyRootFilesystem = true
	spec.Def.LinuxParameters = &orchv1.LinuxParameters{Tmpfs: []*orchv1.Tmpfs{{ContainerPath: "/scratch", Size: 4}}}
	st, out := e.run(t, spec)
	if st.Code != 0 || strings.Contains(out, "rootfs-writable") || !strings.Contains(out, "scratch-writable") {
		t.Fatalf("exit %d, log:\n%s", st.Code, out)
	}
}

// capEff returns the effective capability set printed by `grep CapEff /proc/self/status`.
func capEff(t *testing.T, out string) uint64 {
	t.Helper()
	m := regexp.MustCompile(`CapEff:\s*([0-9a-f]+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no CapEff in:\n%s", out)
	}
	v, err := strconv.ParseUint(m[1], 16, 64)
	if err != nil {
		t.Fatalf("CapEff %q: %v", m[1], err)
	}
	return v
}

func testCapabilities(t *testing.T, e *env) {
	const (
		capChown    = 1 << 0
		capNetAdmin = 1 << 12
		capSysAdmin = 1 << 21
	)
	cases := []struct {
		name        string
		privileged  bool
		caps        *orchv1.KernelCapabilities
		have, lacks uint64
	}{
		{"default", false, nil, capChown, capNetAdmin | capSysAdmin},
		{"add-drop", false, &orchv1.KernelCapabilities{Add: []string{"NET_ADMIN"}, Drop: []string{"chown"}},
			capNetAdmin, capChown | capSysAdmin},
		{"drop-all-add-one", false, &orchv1.KernelCapabilities{Add: []string{"CHOWN"}, Drop: []string{"ALL"}},
			capChown, capNetAdmin | ^uint64(capChown)},
		{"privileged", true, nil, capChown | capNetAdmin | capSysAdmin, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			spec := e.spec(t, "grep", "CapEff", "/proc/self/status")
			spec.Def.Privileged = tc.privileged
			if tc.caps != nil {
				spec.Def.LinuxParameters = &orchv1.LinuxParameters{Capabilities: tc.caps}
			}
			st, out := e.run(t, spec)
			if st.Code != 0 {
				t.Fatalf("exit %d:\n%s", st.Code, out)
			}
			got := capEff(t, out)
			if got&tc.have != tc.have || got&tc.lacks != 0 {
				t.Fatalf("CapEff %#x, want all of %#x and none of %#x", got, tc.have, tc.lacks)
			}
		})
	}
}

func testLinuxParameters(t *testing.T, e *env) {
	spec := e.spec(t, "sh", "-c", strings.Join([]string{
		`echo data > /dev/orchnull && echo device-ok`,
		`grep -E " /(scratch|dev/shm) " /proc/mounts`,
		`echo "nofile=$(ulimit -n)"`,
		`echo "pid1=$(cat /proc/1/cmdline | tr '\0' ' ')"`,
		`exit 7`,
	}, "; "))
	spec.Def.Ulimits = []*orchv1.Ulimit{{Name: "nofile", SoftLimit: 4000, HardLimit: 4096}}
	init := true
	spec.Def.LinuxParameters = &orchv1.LinuxParameters{
		Devices:            []*orchv1.Device{{HostPath: "/dev/null", ContainerPath: "/dev/orchnull", Permissions: []string{"read", "write"}}},
		Tmpfs:              []*orchv1.Tmpfs{{ContainerPath: "/scratch", Size: 8, MountOptions: []string{"exec"}}},
		SharedMemorySize:   32,
		InitProcessEnabled: &init,
	}
	st, out := e.run(t, spec)
	if st.Code != 7 {
		t.Fatalf("exit %+v (want 7 through the init), log:\n%s", st, out)
	}
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`device-ok`),
		regexp.MustCompile(`tmpfs /scratch tmpfs \S*size=8192k`),
		regexp.MustCompile(`/dev/shm tmpfs \S*size=32768k`),
		regexp.MustCompile(`nofile=4000`),
		regexp.MustCompile(`pid1=/sbin/orch-init -- sh -c`),
	} {
		if !want.MatchString(out) {
			t.Errorf("log does not match %q:\n%s", want, out)
		}
	}
	if m := regexp.MustCompile(`tmpfs /scratch tmpfs (\S+)`).FindStringSubmatch(out); m == nil || strings.Contains(m[1], "noexec") {
		t.Errorf("/scratch should be exec (mountOptions override the noexec default): %v", m)
	}
}

func testNetNSAndMounts(t *testing.T, e *env) {
	name := "orchrt-" + e.suffix
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	nsPath := "/run/netns/" + name
	var fi syscall.Stat_t
	if err := syscall.Stat(nsPath, &fi); err != nil {
		t.Fatalf("stat %s: %v", nsPath, err)
	}

	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "f"), []byte("from-host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	rw := t.TempDir()
	spec := e.spec(t, "sh", "-c", strings.Join([]string{
		`echo "netns=$(stat -L -c %i /proc/self/ns/net)"`,
		`echo "hostname=$(hostname)"`,
		`cat /data/f`,
		`touch /data/g 2>/dev/null && echo ro-writable`,
		`echo written > /out/w`,
	}, "; "))
	spec.NetNSPath = nsPath
	spec.Hostname = "orch-host-" + e.suffix
	spec.Mounts = []runtime.Mount{
		{Source: dir, Destination: "/data", ReadOnly: true},
		{Source: rw, Destination: "/out"},
	}
	st, out := e.run(t, spec)
	if st.Code != 0 {
		t.Fatalf("exit %d:\n%s", st.Code, out)
	}
	for _, want := range []string{fmt.Sprintf("netns=%d", fi.Ino), "hostname=" + spec.Hostname, "from-host"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "ro-writable") {
		t.Errorf("read-only mount was writable:\n%s", out)
	}
	if b, err := os.ReadFile(filepath.Join(rw, "w")); err != nil || string(b) != "written\n" {
		t.Errorf("rw mount: %q, %v", b, err)
	}
}

func testList(t *testing.T, e *env) {
	spec := e.spec(t, "sh", "-c", `trap "exit 0" TERM; while :; do sleep 0.1; done`)
	spec.Labels["team"] = "blue"
	e.create(t, spec)
	find := func(want runtime.State) runtime.ContainerInfo {
		t.Helper()
		infos, err := e.rt.List(testCtx(t))
		if err != nil {
			t.Fatalf("List: %v", err)
		}
		for _, info := range infos {
			if info.ID == spec.ID {
				if info.State != want {
					t.Fatalf("state %s, want %s (%+v)", info.State, want, info)
				}
				return info
			}
		}
		t.Fatalf("List lacks %s", spec.ID)
		return runtime.ContainerInfo{}
	}
	info := find(runtime.StateCreated)
	if info.Labels["team"] != "blue" || info.Labels[runtime.LabelTaskID] != spec.TaskID || info.Image != spec.Def.Image {
		t.Fatalf("info %+v", info)
	}
	ch := e.start(t, spec.ID)
	if info := find(runtime.StateRunning); info.Pid == 0 || info.Exit != nil {
		t.Fatalf("running info %+v", info)
	}
	if err := e.rt.Stop(testCtx(t), spec.ID, 10*time.Second); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	waitExit(t, ch, 5*time.Second)
	if info := find(runtime.StateStopped); info.Exit == nil || info.Exit.Code != 0 || info.Exit.At.IsZero() {
		t.Fatalf("stopped info %+v exit %+v", info, info.Exit)
	}
}

// testAdoption: a second Runtime (a restarted agent: new client, no IO attached) lists, waits
// on and stops a container the first one started; the log keeps being written throughout.
func testAdoption(t *testing.T, e *env) {
	first := e.newRuntime(t)
	spec := e.spec(t, "sh", "-c", `trap "echo bye; exit 5" TERM; i=0; while :; do echo tick $i; i=$((i+1)); sleep 0.1; done`)
	if err := first.Create(testCtx(t), spec); err != nil {
		t.Fatalf("Create: %v", err)
	}
	t.Cleanup(func() { e.rt.Delete(context.Background(), spec.ID) })
	if _, err := first.Start(testCtx(t), spec.ID); err != nil {
		t.Fatalf("Start: %v", err)
	}
	e.output(t, spec, "tick 1")
	firstWait, err := first.Wait(testCtx(t), spec.ID)
	if err != nil {
		t.Fatalf("Wait: %v", err)
	}
	if err := first.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case st, ok := <-firstWait:
		if ok {
			t.Fatalf("Wait of a closed Runtime delivered %+v", st)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("Wait channel of a closed Runtime still open")
	}

	second := e.newRuntime(t)
	infos, err := second.List(testCtx(t))
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	i := slices.IndexFunc(infos, func(c runtime.ContainerInfo) bool { return c.ID == spec.ID })
	if i < 0 || infos[i].State != runtime.StateRunning || infos[i].Labels[runtime.LabelContainer] != spec.ID {
		t.Fatalf("List after restart: %+v", infos)
	}
	ch, err := second.Wait(testCtx(t), spec.ID)
	if err != nil {
		t.Fatalf("Wait: %v", err)
	}
	e.output(t, spec, "tick 5") // logging went on without the first client
	if err := second.Stop(testCtx(t), spec.ID, 10*time.Second); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if st := waitExit(t, ch, 5*time.Second); st.Code != 5 {
		t.Fatalf("exit %+v, want 5", st)
	}
	e.output(t, spec, "bye")
}

func testDelete(t *testing.T, e *env) {
	cases := []struct {
		name  string
		start bool
		wait  bool
	}{
		{"exited", true, true},
		{"running", true, false},
		{"created", false, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			spec := e.spec(t, "sh", "-c", "sleep 0.2; exit 1")
			if !tc.wait {
				spec.Def.Command = []string{"sleep", "100"}
			}
			ctx := testCtx(t)
			if err := e.rt.Create(ctx, spec); err != nil {
				t.Fatalf("Create: %v", err)
			}
			if tc.start {
				ch := e.start(t, spec.ID)
				if tc.wait {
					waitExit(t, ch, 10*time.Second)
				}
			}
			for i := range 2 {
				if err := e.rt.Delete(ctx, spec.ID); err != nil {
					t.Fatalf("Delete #%d: %v", i+1, err)
				}
			}
			infos, err := e.rt.List(ctx)
			if err != nil {
				t.Fatalf("List: %v", err)
			}
			if slices.ContainsFunc(infos, func(c runtime.ContainerInfo) bool { return c.ID == spec.ID }) {
				t.Fatalf("deleted container still listed")
			}
			sctx := namespaces.WithNamespace(ctx, e.namespace)
			if _, err := e.rt.client.SnapshotService(snapshotter).Stat(sctx, spec.ID); !errdefs.IsNotFound(err) {
				t.Fatalf("snapshot stat after Delete: %v, want not found", err)
			}
			if _, err := e.rt.Wait(ctx, spec.ID); !isNotFound(err) {
				t.Fatalf("Wait after Delete: %v, want ErrNotFound", err)
			}
			if _, err := e.rt.Stats(ctx, spec.ID); !isNotFound(err) {
				t.Fatalf("Stats after Delete: %v, want ErrNotFound", err)
			}
			if _, err := e.rt.Start(ctx, spec.ID); !isNotFound(err) {
				t.Fatalf("Start after Delete: %v, want ErrNotFound", err)
			}
			if err := e.rt.Stop(ctx, spec.ID, time.Second); err != nil {
				t.Fatalf("Stop after Delete: %v", err)
			}
			// The id is free again.
			if err := e.rt.Create(ctx, spec); err != nil {
				t.Fatalf("Create after Delete: %v", err)
			}
			if err := e.rt.Delete(ctx, spec.ID); err != nil {
				t.Fatalf("Delete: %v", err)
			}
		})
	}
}

func testStats(t *testing.T, e *env) {
	// Hold about 4 MiB in the shell and burn a little CPU.
	spec := e.spec(t, "sh", "-c", `x=$(head -c 4000000 /dev/zero | tr '\0' a); i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; echo ready; while :; do sleep 1; done`)
	spec.MemoryLimitBytes = 64 << 20
	e.create(t, spec)
	e.start(t, spec.ID)
	e.output(t, spec, "ready")
	s, err := e.rt.Stats(testCtx(t), spec.ID)
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	if s.MemoryBytes < 1<<20 || s.CPUUsageUsec == 0 || s.OOMKills != 0 {
		t.Fatalf("stats %+v: want >= 1 MiB memory, some CPU, no OOM kill", s)
	}
	if s.MemoryPeakBytes != 0 && s.MemoryPeakBytes < s.MemoryBytes {
		t.Fatalf("stats %+v: peak below usage", s)
	}
}

func testCreateErrors(t *testing.T, e *env) {
	ctx := testCtx(t)
	spec := e.spec(t, "true")
	e.create(t, spec)
	if err := e.rt.Create(ctx, spec); err == nil {
		t.Fatalf("second Create of %s succeeded", spec.ID)
	}

	// A snapshot left by an interrupted Create does not block the id.
	stale := e.spec(t, "true")
	stale.ID = e.id("stale-snapshot")
	sctx := namespaces.WithNamespace(ctx, e.namespace)
	if _, err := e.rt.client.SnapshotService(snapshotter).Prepare(sctx, stale.ID, ""); err != nil {
		t.Fatalf("prepare stale snapshot: %v", err)
	}
	e.create(t, stale)

	bad := []struct {
		name   string
		mutate func(*runtime.ContainerSpec)
	}{
		{"image-not-pulled", func(s *runtime.ContainerSpec) { s.Def.Image = "127.0.0.1:1/not/pulled:latest" }},
		{"bad-ulimit", func(s *runtime.ContainerSpec) {
			s.Def.Ulimits = []*orchv1.Ulimit{{Name: "bogus", SoftLimit: 1, HardLimit: 1}}
		}},
		{"missing-device", func(s *runtime.ContainerSpec) {
			s.Def.LinuxParameters = &orchv1.LinuxParameters{Devices: []*orchv1.Device{{HostPath: "/dev/orch-no-such-device"}}}
		}},
		{"missing-mount-source", func(s *runtime.ContainerSpec) {
			s.Mounts = []runtime.Mount{{Source: "/nonexistent/orch-" + e.suffix, Destination: "/x"}}
		}},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			spec := e.spec(t, "true")
			tc.mutate(&spec)
			if err := e.rt.Create(ctx, spec); err == nil {
				e.rt.Delete(ctx, spec.ID)
				t.Fatalf("Create succeeded")
			} else {
				t.Logf("Create: %v", err)
			}
			// Nothing is left behind.
			infos, err := e.rt.List(ctx)
			if err != nil {
				t.Fatalf("List: %v", err)
			}
			if slices.ContainsFunc(infos, func(c runtime.ContainerInfo) bool { return c.ID == spec.ID }) {
				t.Fatalf("failed Create left a container")
			}
			sctx := namespaces.WithNamespace(ctx, e.namespace)
			if _, err := e.rt.client.SnapshotService(snapshotter).Stat(sctx, spec.ID); !errdefs.IsNotFound(err) {
				t.Fatalf("failed Create left a snapshot: %v", err)
			}
		})
	}
}

// The container records the image's STOPSIGNAL (SIGTERM when it has none), as
// client.WithImageStopSignal does, also when the image config comes from the runtime's cache.
func testStopSignalLabel(t *testing.T, e *env) {
	for _, tc := range []struct{ image, want string }{
		{"plain", "SIGTERM"}, {"semantics", "SIGQUIT"}, {"plain", "SIGTERM"}, {"semantics", "SIGQUIT"},
	} {
		spec := e.spec(t, "true")
		spec.ID += "-" + harness.RandomSuffix()
		spec.Def.Image = e.images[tc.image]
		e.create(t, spec)
		c, err := e.rt.client.LoadContainer(e.rt.ctx(testCtx(t)), spec.ID)
		if err != nil {
			t.Fatal(err)
		}
		labels, err := c.Labels(e.rt.ctx(testCtx(t)))
		if err != nil {
			t.Fatal(err)
		}
		if got := labels[client.StopSignalLabel]; got != tc.want {
			t.Errorf("image %s: stop signal label %q, want %q", tc.image, got, tc.want)
		}
	}
}
