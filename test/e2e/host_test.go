package e2e

// What a user would look at on the host: HTTP from the host namespace, containerd's
// containers and snapshots, the netns dir, the host's interfaces, processes.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"golang.org/x/sys/unix"
)

// httpGet fetches http://ip/ from the host network namespace, as `curl` on the host would.
// (Debian's busybox 1.35 wget crashes with -T, and without it waits minutes for a dead
// address, so the request is made from a socket opened in the host namespace.)
func (e *env) httpGet(ip string) (string, error) {
	conn, err := dialInNetNS("/run/netns/"+e.hostNS, net.JoinHostPort(ip, "80"), 3*time.Second)
	if err != nil {
		return "", fmt.Errorf("connect to %s:80 in netns %s: %w", ip, e.hostNS, err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(3 * time.Second)); err != nil {
		return "", err
	}
	req, err := http.NewRequest(http.MethodGet, "http://"+ip+"/", nil)
	if err != nil {
		return "", err
	}
	req.Close = true
	if err := req.Write(conn); err != nil {
		return "", fmt.Errorf("GET http://%s/: %w", ip, err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), req)
	if err != nil {
		return "", fmt.Errorf("GET http://%s/: %w", ip, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", fmt.Errorf("GET http://%s/: body: %w", ip, err)
	}
	if resp.StatusCode != http.StatusOK {
		return string(body), fmt.Errorf("GET http://%s/: %s", ip, resp.Status)
	}
	return string(body), nil
}

// dialInNetNS opens a TCP connection from the network namespace at nsPath: the socket is
// created on an OS thread switched into it (the connection can then be used from anywhere).
// The thread is unlocked only if switching back worked; otherwise Go retires it.
func dialInNetNS(nsPath, addr string, timeout time.Duration) (net.Conn, error) {
	type result struct {
		conn net.Conn
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: err}
			return
		}
		defer orig.Close()
		target, err := os.Open(nsPath)
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: err}
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: fmt.Errorf("setns %s: %w", nsPath, err)}
			return
		}
		conn, err := net.DialTimeout("tcp", addr, timeout)
		if unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		ch <- result{conn, err}
	}()
	r := <-ch
	return r.conn, r.err
}

// waitHTTP polls http://ip/ from the host until it answers.
func (e *env) waitHTTP(ip string) string {
	e.t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		body, err := e.httpGet(ip)
		if err == nil {
			return body
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("task at %s does not answer HTTP from the host: %v", ip, err)
		}
		time.Sleep(pollEvery)
	}
}

// ctrdClient returns a containerd client for this env's containerd, closed at cleanup, and a
// context in the agent's namespace.
func (e *env) ctrdClient() (*client.Client, context.Context) {
	e.t.Helper()
	cl, err := e.ctrd.NewClient()
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { cl.Close() })
	return cl, namespaces.WithNamespace(context.Background(), ctrdNamespace)
}

// containersOf lists the containerd containers of a task (ids "<task id>-<name>"); all of
// the namespace with taskID "".
func (e *env) containersOf(taskID string) []string {
	e.t.Helper()
	cl, ctx := e.ctrdClient()
	ctrs, err := cl.Containers(ctx)
	if err != nil {
		e.t.Fatalf("list containers: %v", err)
	}
	var ids []string
	for _, c := range ctrs {
		if strings.HasPrefix(c.ID(), taskID) {
			ids = append(ids, c.ID())
		}
	}
	sort.Strings(ids)
	return ids
}

// snapshotsOf lists the active snapshots of a task's containers (keyed by container id).
func (e *env) snapshotsOf(taskID string) []string {
	e.t.Helper()
	cl, ctx := e.ctrdClient()
	var keys []string
	err := cl.SnapshotService("overlayfs").Walk(ctx, func(_ context.Context, info snapshots.Info) error {
		if strings.HasPrefix(info.Name, taskID) {
			keys = append(keys, info.Name)
		}
		return nil
	})
	if err != nil {
		e.t.Fatalf("walk snapshots: %v", err)
	}
	return keys
}

// containerPID is the pid of the task's container's main process, read from containerd.
func (e *env) containerPID(taskID, name string) uint32 {
	e.t.Helper()
	cl, ctx := e.ctrdClient()
	c, err := cl.LoadContainer(ctx, taskID+"-"+name)
	if err != nil {
		e.t.Fatalf("load container %s-%s: %v", taskID, name, err)
	}
	task, err := c.Task(ctx, nil)
	if err != nil {
		e.t.Fatalf("container %s-%s: task: %v", taskID, name, err)
	}
	st, err := task.Status(ctx)
	if err != nil {
		e.t.Fatalf("container %s-%s: status: %v", taskID, name, err)
	}
	if st.Status != client.Running {
		e.t.Fatalf("container %s-%s is %s, want running", taskID, name, st.Status)
	}
	return task.Pid()
}

// netnsFiles lists the task namespaces mounted in the netns dir.
func (e *env) netnsFiles() []string {
	e.t.Helper()
	entries, err := os.ReadDir(e.netnsDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		e.t.Fatal(err)
	}
	var names []string
	for _, en := range entries {
		names = append(names, en.Name())
	}
	return names
}

// hostLinks lists the interfaces of the host namespace whose names start with prefix.
func (e *env) hostLinks(prefix string) []string {
	e.t.Helper()
	out, err := exec.Command("ip", "-n", e.hostNS, "-o", "link", "show").CombinedOutput()
	if err != nil {
		e.t.Fatalf("ip -n %s link show: %v: %s", e.hostNS, err, out)
	}
	var names []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		// "5: ve0123456789ab@if2: <BROADCAST,...> ..."
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
		if strings.HasPrefix(name, prefix) {
			names = append(names, name)
		}
	}
	return names
}

// processAlive reports whether pid is a live (non-zombie) process.
func processAlive(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil {
		return false
	}
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(raw, ')')
	return i >= 0 && i+2 < len(raw) && raw[i+2] != 'Z' && raw[i+2] != 'X'
}
