package harness

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// containerd 1.6 keeps these under its default state dir whatever the config says.
const (
	shimSocketDir = "/run/containerd/s"
	runcStateRoot = "/run/containerd/runc"
)

// shimProc is a containerd-shim process found in /proc.
type shimProc struct {
	pid           int
	namespace, id string
}

// findShims returns the shims whose command line names address as their containerd.
func findShims(address string) ([]shimProc, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("read /proc: %w", err)
	}
	var shims []shimProc
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		raw, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(raw) == 0 {
			continue // gone, or a kernel thread
		}
		args := strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")
		if !strings.HasPrefix(filepath.Base(args[0]), "containerd-shim") {
			continue
		}
		s := shimProc{pid: pid}
		var addr string
		for i := 1; i+1 < len(args); i++ {
			switch args[i] {
			case "-address", "--address":
				addr = args[i+1]
			case "-namespace", "--namespace":
				s.namespace = args[i+1]
			case "-id", "--id":
				s.id = args[i+1]
			}
		}
		if addr == address {
			shims = append(shims, s)
		}
	}
	return shims, nil
}

// killShims kills every shim of the containerd at address together with the processes under
// it (the containers), removes their runc state and their sockets, and waits until they are
// gone. Normally there is none left: deleting a task makes its shim exit.
func killShims(address string) error {
	shims, err := findShims(address)
	if err != nil || len(shims) == 0 {
		return err
	}
	var errs []error
	for _, s := range shims {
		if s.namespace != "" && s.id != "" {
			// runc kills the container's processes and removes its cgroup and state.
			root := filepath.Join(runcStateRoot, s.namespace)
			if out, err := exec.Command("runc", "--root", root, "delete", "--force", s.id).CombinedOutput(); err != nil &&
				!bytes.Contains(out, []byte("does not exist")) && !bytes.Contains(out, []byte("not exist")) {
				errs = append(errs, fmt.Errorf("runc delete %s/%s: %v: %s", s.namespace, s.id, err, bytes.TrimSpace(out)))
			}
		}
		pids := append(descendants(s.pid), s.pid)
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		if err := waitGone(pids, 5*time.Second); err != nil {
			errs = append(errs, fmt.Errorf("shim %d (%s/%s): %w", s.pid, s.namespace, s.id, err))
		}
		if s.namespace != "" && s.id != "" {
			_ = os.Remove(shimSocketPath(address, s.namespace, s.id))
			removeNamespaceLeftovers(s.namespace)
		}
	}
	return errors.Join(errs...)
}

// shimSocketPath is where containerd 1.6 puts a shim's socket (runtime/v2/shim.SocketAddress):
// a hash of the containerd address, namespace and id under /run/containerd/s.
func shimSocketPath(address, namespace, id string) string {
	d := sha256.Sum256([]byte(filepath.Join(address, namespace, id)))
	return filepath.Join(shimSocketDir, fmt.Sprintf("%x", d))
}

// descendants returns the pids of every process below pid, deepest last.
func descendants(pid int) []int {
	children := map[int][]int{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if pp, ok := parentPID(p); ok {
			children[pp] = append(children[pp], p)
		}
	}
	var out []int
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, c := range children[p] {
			out = append(out, c)
			queue = append(queue, c)
		}
	}
	return out
}

// parentPID reads the ppid from /proc/<pid>/stat ("pid (comm) state ppid ...").
func parentPID(pid int) (int, bool) {
	raw, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, false
	}
	i := bytes.LastIndexByte(raw, ')')
	if i < 0 {
		return 0, false
	}
	fields := strings.Fields(string(raw[i+1:]))
	if len(fields) < 2 {
		return 0, false
	}
	pp, err := strconv.Atoi(fields[1])
	return pp, err == nil
}

// waitGone waits until none of pids is alive (zombies count as gone).
func waitGone(pids []int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		var alive []int
		for _, pid := range pids {
			if processAlive(pid) {
				alive = append(alive, pid)
			}
		}
		if len(alive) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("processes %v still alive after %s", alive, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func processAlive(pid int) bool {
	raw, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(raw, ')')
	return i >= 0 && i+2 < len(raw) && raw[i+2] != 'Z' && raw[i+2] != 'X'
}

// mountsUnder lists the mount points at or under dir, deepest first.
func mountsUnder(dir string) ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("read mountinfo: %w", err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMountinfo(fields[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read mountinfo: %w", err)
	}
	sort.SliceStable(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out, nil
}

// unescapeMountinfo undoes the kernel's octal escapes (\040 for a space, ...).
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// UnmountUnder lazily unmounts everything mounted at or under dir, deepest first (rootfs
// overlays, bind mounts left by a shim that was killed, task network namespaces and a netns
// dir bind-mounted onto itself as `ip netns` does), repeating for stacked mounts.
func UnmountUnder(dir string) error {
	if dir == "" {
		return nil
	}
	for pass := 0; pass < 5; pass++ {
		mps, err := mountsUnder(dir)
		if err != nil {
			return err
		}
		if len(mps) == 0 {
			return nil
		}
		for _, mp := range mps {
			if err := unix.Unmount(mp, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
				return fmt.Errorf("unmount %s: %w", mp, err)
			}
		}
	}
	mps, err := mountsUnder(dir)
	if err == nil && len(mps) > 0 {
		err = fmt.Errorf("still mounted under %s: %v", dir, mps)
	}
	return err
}

// removeNamespaceLeftovers removes the empty directories that a containerd namespace leaves
// outside Dir once its containers are gone: runc's state dir (/run/containerd/runc/<namespace>)
// and the per-namespace cgroups that the client's default spec creates as parents of its
// containers' cgroups (/sys/fs/cgroup[/<controller>]/<namespace>). rmdir fails on a directory
// or cgroup that is not empty, which is left alone.
func removeNamespaceLeftovers(ns string) {
	if ns == "" || strings.ContainsAny(ns, "/.") {
		return
	}
	_ = unix.Rmdir(filepath.Join(runcStateRoot, ns))
	_ = unix.Rmdir(filepath.Join("/sys/fs/cgroup", ns))
	entries, err := os.ReadDir("/sys/fs/cgroup")
	if err != nil {
		return
	}
	for _, e := range entries {
		if e.IsDir() {
			_ = unix.Rmdir(filepath.Join("/sys/fs/cgroup", e.Name(), ns))
		}
	}
}
