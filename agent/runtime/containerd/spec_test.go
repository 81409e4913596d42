package containerd

import (
	"slices"
	"testing"

	"github.com/containerd/cgroups/v3/cgroup1/stats"
	statsv2 "github.com/containerd/cgroups/v3/cgroup2/stats"
	"github.com/containerd/containerd/api/types"
	"github.com/containerd/typeurl/v2"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"orch/agent/logs"
	"orch/agent/runtime"
	orchv1 "orch/proto/orch/v1"
)

func TestProcessArgs(t *testing.T) {
	img := ocispec.ImageConfig{Entrypoint: []string{"/ep", "a"}, Cmd: []string{"cmd", "b"}}
	cases := []struct {
		name                 string
		img                  ocispec.ImageConfig
		entry, cmd, override []string
		want                 []string
		wantErr              bool
	}{
		{name: "image", img: img, want: []string{"/ep", "a", "cmd", "b"}},
		{name: "command", img: img, cmd: []string{"c"}, want: []string{"/ep", "a", "c"}},
		{name: "entrypoint drops image cmd", img: img, entry: []string{"/x"}, want: []string{"/x"}},
		{name: "both", img: img, entry: []string{"/x"}, cmd: []string{"y"}, want: []string{"/x", "y"}},
		{name: "override", img: img, cmd: []string{"c"}, override: []string{"o"}, want: []string{"/ep", "a", "o"}},
		{name: "empty override clears cmd", img: img, cmd: []string{"c"}, override: []string{}, want: []string{"/ep", "a"}},
		{name: "no entrypoint in image", img: ocispec.ImageConfig{Cmd: []string{"sh"}}, cmd: []string{"ls"}, want: []string{"ls"}},
		{name: "nothing", wantErr: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := processArgs(tc.img, tc.entry, tc.cmd, tc.override)
			if (err != nil) != tc.wantErr || !slices.Equal(got, tc.want) {
				t.Fatalf("processArgs = %q, %v; want %q (error %v)", got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func TestCapNames(t *testing.T) {
	cases := []struct {
		in      []string
		want    []string
		all     bool
		wantErr bool
	}{
		{in: []string{"NET_ADMIN", "cap_chown", "sys_ptrace"}, want: []string{"CAP_NET_ADMIN", "CAP_CHOWN", "CAP_SYS_PTRACE"}},
		{in: []string{"ALL", "KILL"}, want: []string{"CAP_KILL"}, all: true},
		{in: []string{""}, wantErr: true},
	}
	for _, tc := range cases {
		got, all, err := capNames(tc.in)
		if (err != nil) != tc.wantErr || all != tc.all || !slices.Equal(got, tc.want) {
			t.Errorf("capNames(%q) = %q, %v, %v", tc.in, got, all, err)
		}
	}
}

func TestDevicePermissions(t *testing.T) {
	cases := []struct {
		in      []string
		want    string
		wantErr bool
	}{
		{nil, "rwm", false},
		{[]string{"read"}, "r", false},
		{[]string{"mknod", "read", "write"}, "rwm", false},
		{[]string{"write", "read"}, "rw", false},
		{[]string{"exec"}, "", true},
	}
	for _, tc := range cases {
		got, err := devicePermissions(tc.in)
		if got != tc.want || (err != nil) != tc.wantErr {
			t.Errorf("devicePermissions(%q) = %q, %v", tc.in, got, err)
		}
	}
}

func TestRlimits(t *testing.T) {
	got, err := rlimitsFor([]*orchv1.Ulimit{{Name: "nofile", SoftLimit: 10, HardLimit: 20}, {Name: "NPROC", SoftLimit: 5, HardLimit: 5}})
	want := []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: 10, Hard: 20}, {Type: "RLIMIT_NPROC", Soft: 5, Hard: 5}}
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("rlimitsFor = %+v, %v", got, err)
	}
	for _, bad := range []*orchv1.Ulimit{{Name: "files", SoftLimit: 1, HardLimit: 1}, {Name: "nofile", SoftLimit: 2, HardLimit: 1}} {
		if _, err := rlimitsFor([]*orchv1.Ulimit{bad}); err == nil {
			t.Errorf("rlimitsFor(%v) succeeded", bad)
		}
	}
}

func TestLogRotation(t *testing.T) {
	cases := []struct {
		opts      map[string]string
		size      int64
		files     int
		wantError bool
	}{
		{nil, logs.DefaultMaxSize, logs.DefaultMaxFiles, false},
		{map[string]string{"max-size": "5m", "max-file": "2"}, 5 << 20, 2, false},
		{map[string]string{"max-size": "512k"}, 512 << 10, logs.DefaultMaxFiles, false},
		{map[string]string{"max-size": "1000"}, 1000, logs.DefaultMaxFiles, false},
		{map[string]string{"max-size": "1g"}, 1 << 30, logs.DefaultMaxFiles, false},
		{map[string]string{"max-size": "lots"}, 0, 0, true},
		{map[string]string{"max-file": "0"}, 0, 0, true},
	}
	for _, tc := range cases {
		size, files, err := logRotation(tc.opts)
		if (err != nil) != tc.wantError || (err == nil && (size != tc.size || files != tc.files)) {
			t.Errorf("logRotation(%v) = %d, %d, %v", tc.opts, size, files, err)
		}
	}
}

func TestMountsFor(t *testing.T) {
	init := true
	spec := runtime.ContainerSpec{
		Def: &orchv1.ContainerDefinition{LinuxParameters: &orchv1.LinuxParameters{
			InitProcessEnabled: &init,
			Tmpfs:              []*orchv1.Tmpfs{{ContainerPath: "/t", Size: 3, MountOptions: []string{"exec"}}},
		}},
		Mounts: []runtime.Mount{{Source: "/h", Destination: "/c", ReadOnly: true}},
	}
	got, err := mountsFor(spec, "/usr/bin/tini-static")
	if err != nil {
		t.Fatal(err)
	}
	want := []specs.Mount{
		{Destination: "/c", Type: "bind", Source: "/h", Options: []string{"rbind", "rprivate", "ro"}},
		{Destination: "/t", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "nodev", "noexec", "exec", "size=3m"}},
		{Destination: initPath, Type: "bind", Source: "/usr/bin/tini-static", Options: []string{"bind", "rprivate", "ro"}},
	}
	if len(got) != len(want) {
		t.Fatalf("mountsFor = %+v", got)
	}
	for i := range want {
		if got[i].Destination != want[i].Destination || got[i].Source != want[i].Source ||
			got[i].Type != want[i].Type || !slices.Equal(got[i].Options, want[i].Options) {
			t.Errorf("mount %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	spec.Mounts = []runtime.Mount{{Source: "/h", Destination: "relative"}}
	if _, err := mountsFor(spec, "/init"); err == nil {
		t.Errorf("relative destination accepted")
	}
}

func TestPlainHTTP(t *testing.T) {
	r := &Runtime{insecure: map[string]bool{}}
	WithInsecureRegistries("registry.lan:5000", "Plain.Example")(r)
	cases := map[string]bool{
		"127.0.0.1:5000":    true,
		"127.1.2.3":         true,
		"localhost:5000":    true,
		"[::1]:5000":        true,
		"registry.lan:5000": true,
		"registry.lan:5001": false,
		"plain.example:443": true,
		"docker.io":         false,
		"10.0.0.1:5000":     false,
	}
	for host, want := range cases {
		if got, err := r.plainHTTP(host); err != nil || got != want {
			t.Errorf("plainHTTP(%s) = %v, %v; want %v", host, got, err, want)
		}
	}
}

func TestNormalizeRef(t *testing.T) {
	cases := map[string]string{
		"busybox":                      "docker.io/library/busybox:latest",
		"127.0.0.1:5000/a/b":           "127.0.0.1:5000/a/b:latest",
		"127.0.0.1:5000/a/b:v1":        "127.0.0.1:5000/a/b:v1",
		"registry.lan/x@sha256:" + sha: "registry.lan/x@sha256:" + sha,
	}
	for in, want := range cases {
		if got, err := normalizeRef(in); err != nil || got != want {
			t.Errorf("normalizeRef(%s) = %s, %v; want %s", in, got, err, want)
		}
	}
	if _, err := normalizeRef("a/b:bad tag"); err == nil {
		t.Errorf("invalid ref accepted")
	}
}

const sha = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func TestDecodeMetrics(t *testing.T) {
	v1 := &stats.Metrics{
		CPU:              &stats.CPUStat{Usage: &stats.CPUUsage{Total: 5_000_000}},
		Memory:           &stats.MemoryStat{TotalInactiveFile: 100, Usage: &stats.MemoryEntry{Usage: 1100, Max: 2000}},
		MemoryOomControl: &stats.MemoryOomControl{OomKill: 2},
	}
	v2 := &statsv2.Metrics{
		CPU:          &statsv2.CPUStat{UsageUsec: 7},
		Memory:       &statsv2.MemoryStat{Usage: 300, InactiveFile: 400, MaxUsage: 900},
		MemoryEvents: &statsv2.MemoryEvents{OomKill: 1},
	}
	cases := []struct {
		name string
		msg  any
		want runtime.Stats
	}{
		{"cgroup v1", v1, runtime.Stats{CPUUsageUsec: 5000, MemoryBytes: 1000, MemoryPeakBytes: 2000, OOMKills: 2}},
		{"cgroup v2", v2, runtime.Stats{CPUUsageUsec: 7, MemoryBytes: 0, MemoryPeakBytes: 900, OOMKills: 1}},
	}
	for _, tc := range cases {
		a, err := typeurl.MarshalAnyToProto(tc.msg)
		if err != nil {
			t.Fatalf("%s: marshal: %v", tc.name, err)
		}
		got, err := decodeMetrics(&types.Metric{Data: a})
		if err != nil || got != tc.want {
			t.Errorf("%s: decodeMetrics = %+v, %v; want %+v", tc.name, got, err, tc.want)
		}
	}
	if _, err := decodeMetrics(&types.Metric{}); err == nil {
		t.Errorf("empty metric decoded")
	}
}
