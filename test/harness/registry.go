package harness

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// RegistryBinary is Debian's docker-registry (distribution 2.8).
const RegistryBinary = "/usr/bin/docker-registry"

// Registry is a private OCI registry serving plain HTTP on 127.0.0.1, with filesystem storage
// under Dir.
type Registry struct {
	Addr       string // 127.0.0.1:port
	Dir        string
	ConfigPath string
	LogPath    string

	ownDir   bool
	cmd      *exec.Cmd
	exited   chan struct{}
	waitErr  error
	stopOnce sync.Once
	stopErr  error
}

// StartRegistry starts a registry for the test on a free port and waits until GET /v2/
// answers 200. Its cleanup stops it and removes its storage; the tail of its log is printed
// when the test has failed.
func StartRegistry(t testing.TB) *Registry {
	t.Helper()
	r, err := RunRegistry("", "")
	if err != nil {
		t.Fatalf("start registry: %v", err)
	}
	t.Cleanup(func() {
		if err := r.stop(func() {
			if t.Failed() {
				t.Logf("tail of registry log (%s):\n%s", r.LogPath, TailFile(r.LogPath, logTailLines))
			}
		}); err != nil {
			t.Errorf("stop registry %s: %v", r.Addr, err)
		}
	})
	return r
}

// RunRegistry starts a registry with its storage under dir (a new temp dir when ""), listening
// on addr (a free 127.0.0.1 port when ""). Stop removes dir when RunRegistry created it, else
// only the storage and config in it.
func RunRegistry(dir, addr string) (*Registry, error) {
	r := &Registry{exited: make(chan struct{})}
	if dir == "" {
		d, err := os.MkdirTemp("", "orch-registry-")
		if err != nil {
			return nil, fmt.Errorf("registry temp dir: %w", err)
		}
		dir, r.ownDir = d, true
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("registry dir %s: %w", dir, err)
	}
	if addr == "" {
		port, err := FreeLoopbackPort()
		if err != nil {
			r.cleanupDirs()
			return nil, err
		}
		addr = fmt.Sprintf("127.0.0.1:%d", port)
	}
	r.Addr, r.Dir = addr, dir
	r.ConfigPath = filepath.Join(dir, "config.yml")
	r.LogPath = filepath.Join(dir, "registry.log")
	if err := r.start(); err != nil {
		r.kill()
		r.cleanupDirs()
		return nil, fmt.Errorf("registry on %s: %w", addr, err)
	}
	return r, nil
}

// registryConfig: no auth, no TLS, deletes allowed, no periodic storage health check.
const registryConfig = `version: 0.1
log:
  level: info
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %q
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
http:
  addr: %q
  headers:
    X-Content-Type-Options: [nosniff]
`

func (r *Registry) start() error {
	storage := filepath.Join(r.Dir, "storage")
	if err := os.MkdirAll(storage, 0o755); err != nil {
		return fmt.Errorf("storage dir: %w", err)
	}
	if err := os.WriteFile(r.ConfigPath, []byte(fmt.Sprintf(registryConfig, storage, r.Addr)), 0o644); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	logf, err := os.OpenFile(r.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("log: %w", err)
	}
	defer logf.Close()
	r.cmd = exec.Command(RegistryBinary, "serve", r.ConfigPath)
	r.cmd.Stdout, r.cmd.Stderr = logf, logf
	r.cmd.Dir = r.Dir
	// A minimal environment: nothing of the test's (proxies, REGISTRY_* overrides) leaks in.
	r.cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := startChild(r.cmd, r.exited, &r.waitErr); err != nil {
		return fmt.Errorf("start %s: %w", RegistryBinary, err)
	}
	return r.waitReady(20 * time.Second)
}

func (r *Registry) waitReady(timeout time.Duration) error {
	hc := &http.Client{Timeout: time.Second, Transport: &http.Transport{
		Proxy:       nil, // never through a proxy: the registry is on loopback
		DialContext: (&net.Dialer{Timeout: time.Second}).DialContext,
	}}
	deadline := time.Now().Add(timeout)
	var lastErr error
	for time.Now().Before(deadline) {
		select {
		case <-r.exited:
			return fmt.Errorf("registry exited: %v; log tail:\n%s", r.waitErr, TailFile(r.LogPath, 20))
		default:
		}
		resp, err := hc.Get("http://" + r.Addr + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("GET /v2/: %s", resp.Status)
		}
		lastErr = err
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("not answering after %s: %v; log tail:\n%s", timeout, lastErr, TailFile(r.LogPath, 20))
}

// Stop kills the registry and removes its storage. It is safe to call more than once.
func (r *Registry) Stop() error {
	return r.stop(nil)
}

func (r *Registry) stop(beforeRemove func()) error {
	r.stopOnce.Do(func() {
		r.kill()
		if beforeRemove != nil {
			beforeRemove()
		}
		r.stopErr = r.cleanupDirs()
	})
	return r.stopErr
}

// kill sends SIGTERM, then SIGKILL after 5s, and waits.
func (r *Registry) kill() {
	if r.cmd == nil || r.cmd.Process == nil {
		return
	}
	select {
	case <-r.exited:
		return
	default:
	}
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.exited:
	case <-time.After(5 * time.Second):
		_ = r.cmd.Process.Kill()
		<-r.exited
	}
}

func (r *Registry) cleanupDirs() error {
	target := r.Dir
	if !r.ownDir {
		for _, p := range []string{filepath.Join(r.Dir, "storage"), r.ConfigPath} {
			if err := os.RemoveAll(p); err != nil {
				return fmt.Errorf("remove %s: %w", p, err)
			}
		}
		return nil
	}
	if err := os.RemoveAll(target); err != nil {
		return fmt.Errorf("remove %s: %w", target, err)
	}
	return nil
}
