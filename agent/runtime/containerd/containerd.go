// Package containerd implements runtime.Runtime with the containerd v2 Go client. It owns the
// agent's containerd namespace: images are pulled and unpacked there (overlayfs), every task
// container is a containerd container with its own snapshot, and its stdout/stderr go to the
// agent's own binary, which acts as a containerd binary log driver (see agent/logs).
//
// It works with containerd 1.6 (Debian 12) and newer: it uses only the classic services
// (containers, tasks, images, content, snapshots, leases, introspection) and pulls through the
// client-side Pull path, not the transfer service, which 1.6 does not have.
//
// The containerd task is created in Create (runc create), so that spec errors surface there and
// Start is a single quick call; a restarted agent finds its containers by namespace and labels
// and attaches to their tasks without IO (the log driver process belongs to the shim, not to
// the agent), so adoption does not interrupt logging.
package containerd

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/remotes"
	"github.com/containerd/containerd/v2/core/remotes/docker"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	"github.com/distribution/reference"
	"golang.org/x/sync/singleflight"

	"orch/agent/runtime"
)

// snapshotter is the only snapshotter orch uses; images are unpacked into it on pull.
const snapshotter = "overlayfs"

// Paths and defaults.
const (
	defaultNamespace  = "orch"
	defaultInitBinary = "/usr/bin/tini-static"
	// pullTimeout bounds one registry pull, which no single caller's context cancels.
	pullTimeout = 30 * time.Minute
	// initPath is where the init binary is bind-mounted inside containers with
	// linuxParameters.initProcessEnabled.
	initPath = "/sbin/orch-init"
)

var _ runtime.Runtime = (*Runtime)(nil)

// Runtime runs containers through containerd. It is safe for concurrent use.
type Runtime struct {
	client *client.Client

	namespace  string
	insecure   map[string]bool
	logDriver  string
	initBinary string
	auth       func(host string) (user, secret string, err error)

	pulls    singleflight.Group
	creating sync.Map // ids with a Create in progress
	// created holds the task Create made, by container id, until Start or Delete: Wait and
	// Start use it instead of loading the container and its task again (four containerd
	// calls on every container start).
	created sync.Map
	// images caches, by the image's content digest (immutable), its config and the chain id
	// of its layers: reading them from the content store took a few milliseconds of every
	// container start (the pull check, the config, the snapshot's parent).
	images imageInfos

	closed    chan struct{} // closed by Close: ends Wait goroutines and pull waits
	closeOnce sync.Once
	closeErr  error
}

// Opt configures a Runtime.
type Opt func(*Runtime)

// WithNamespace sets the containerd namespace (default "orch").
func WithNamespace(ns string) Opt { return func(r *Runtime) { r.namespace = ns } }

// WithInsecureRegistries makes pulls from these registries ("host" or "host:port") use plain
// HTTP. Loopback registries (127.0.0.0/8, localhost, [::1]) always use plain HTTP.
func WithInsecureRegistries(hosts ...string) Opt {
	return func(r *Runtime) {
		for _, h := range hosts {
			r.insecure[strings.ToLower(h)] = true
		}
	}
}

// WithLogDriver sets the binary containerd's shim starts as the containers' log driver
// (default: orch-logger beside this executable, else this executable, which must dispatch to
// logs.DriverMain).
func WithLogDriver(exe string) Opt { return func(r *Runtime) { r.logDriver = exe } }

// WithInitBinary sets the statically linked init (tini) mounted into containers that ask for
// initProcessEnabled (default /usr/bin/tini-static).
func WithInitBinary(path string) Opt { return func(r *Runtime) { r.initBinary = path } }

// WithRegistryAuth sets a function that returns credentials for a registry host; it may return
// empty strings for anonymous access.
func WithRegistryAuth(fn func(host string) (user, secret string, err error)) Opt {
	return func(r *Runtime) { r.auth = fn }
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// New connects to containerd at address (a unix socket path). The connection is lazy; New
// fails only on bad options or when the log driver executable cannot be found.
func New(address string, opts ...Opt) (*Runtime, error) {
	r := &Runtime{insecure: map[string]bool{}, closed: make(chan struct{})}
	for _, o := range opts {
		o(r)
	}
	if r.namespace == "" {
		r.namespace = defaultNamespace
	}
	if r.initBinary == "" {
		r.initBinary = defaultInitBinary
	}
	if r.logDriver == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("containerd runtime: find log driver executable: %w", err)
		}
		r.logDriver = exe
		// The small dedicated driver starts faster; the shim waits for it at every task start.
		if small := filepath.Join(filepath.Dir(exe), "orch-logger"); isExecutable(small) {
			r.logDriver = small
		}
	}
	c, err := client.New(address, client.WithDefaultNamespace(r.namespace))
	if err != nil {
		return nil, fmt.Errorf("containerd runtime: connect to %s: %w", address, err)
	}
	r.client = c
	return r, nil
}

// Close closes the connection to containerd. Containers keep running.
func (r *Runtime) Close() error {
	r.closeOnce.Do(func() {
		close(r.closed)
		r.closeErr = r.client.Close()
	})
	return r.closeErr
}

// ctx puts the runtime's namespace on ctx.
func (r *Runtime) ctx(ctx context.Context) context.Context {
	return namespaces.WithNamespace(ctx, r.namespace)
}

// Pull makes ref present and unpacked. An image that is already unpacked is not looked up in
// the registry; one whose content is present but not unpacked is unpacked locally. Concurrent
// pulls of one ref share a single registry pull, which goes on (up to pullTimeout) when a
// caller's ctx ends.
func (r *Runtime) Pull(ctx context.Context, ref string) (runtime.PullResult, error) {
	ctx = r.ctx(ctx)
	name, err := normalizeRef(ref)
	if err != nil {
		return runtime.PullResult{}, fmt.Errorf("pull %s: %w", ref, err)
	}
	if img, err := r.client.GetImage(ctx, name); err == nil {
		// Unpacked: the snapshot of its layers exists (what img.IsUnpacked checks, with the
		// chain id from the cache instead of the content store).
		if info, err := r.images.get(ctx, img); err == nil {
			if _, err := r.client.SnapshotService(snapshotter).Stat(ctx, info.chain); err == nil {
				return runtime.PullResult{Digest: img.Target().Digest.String()}, nil
			}
		}
	} else if !errdefs.IsNotFound(err) {
		return runtime.PullResult{}, fmt.Errorf("pull %s: look up image: %w", ref, err)
	}
	// The shared pull is detached from the callers' contexts: one caller giving up (its task
	// was stopped) must not fail the others waiting for the same image.
	ch := r.pulls.DoChan(name, func() (any, error) {
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), pullTimeout)
		defer cancel()
		return r.pull(pctx, name)
	})
	select {
	case res := <-ch:
		if res.Err != nil {
			return runtime.PullResult{}, fmt.Errorf("pull %s: %w", ref, res.Err)
		}
		return res.Val.(runtime.PullResult), nil
	case <-ctx.Done():
		return runtime.PullResult{}, fmt.Errorf("pull %s: %w", ref, ctx.Err())
	case <-r.closed:
		return runtime.PullResult{}, fmt.Errorf("pull %s: runtime closed", ref)
	}
}

func (r *Runtime) pull(ctx context.Context, name string) (runtime.PullResult, error) {
	// The lease holds the content and snapshots written so far: without it containerd's garbage
	// collector may remove the layers of a half-pulled image before the image record exists.
	ctx, done, err := r.client.WithLease(ctx) // random id, expires after 24 h if the agent dies mid-pull
	if err != nil {
		return runtime.PullResult{}, fmt.Errorf("create lease: %w", err)
	}
	defer done(context.WithoutCancel(ctx))

	// Content already present (an earlier pull was interrupted after the image record was
	// written, or the snapshots were removed): unpack without the registry.
	if img, err := r.client.GetImage(ctx, name); err == nil {
		if err := img.Unpack(ctx, snapshotter); err == nil {
			return runtime.PullResult{Digest: img.Target().Digest.String()}, nil
		}
	}
	img, err := r.client.Pull(ctx, name,
		client.WithPullUnpack,
		client.WithPullSnapshotter(snapshotter),
		client.WithResolver(r.resolver()),
	)
	if err != nil {
		return runtime.PullResult{}, err
	}
	return runtime.PullResult{Digest: img.Target().Digest.String(), Pulled: true}, nil
}

func (r *Runtime) resolver() remotes.Resolver {
	ropts := []docker.RegistryOpt{docker.WithPlainHTTP(r.plainHTTP)}
	if r.auth != nil {
		ropts = append(ropts, docker.WithAuthorizer(docker.NewDockerAuthorizer(docker.WithAuthCreds(r.auth))))
	}
	return docker.NewResolver(docker.ResolverOptions{Hosts: docker.ConfigureDefaultRegistries(ropts...)})
}

// plainHTTP reports whether the registry host[:port] is spoken to over HTTP.
func (r *Runtime) plainHTTP(host string) (bool, error) {
	if r.insecure[strings.ToLower(host)] {
		return true, nil
	}
	if h, _, err := net.SplitHostPort(host); err == nil && r.insecure[strings.ToLower(h)] {
		return true, nil
	}
	return docker.MatchLocalhost(host)
}

// normalizeRef turns "busybox" into "docker.io/library/busybox:latest", as docker does, so
// that one image has one name in the store.
func normalizeRef(ref string) (string, error) {
	named, err := reference.ParseDockerRef(ref)
	if err != nil {
		return "", err
	}
	return named.String(), nil
}

// notFound converts containerd's not-found into runtime.ErrNotFound, wrapped with the id.
func notFound(id string, err error) error {
	if errdefs.IsNotFound(err) {
		return fmt.Errorf("container %s: %w: %w", id, runtime.ErrNotFound, err)
	}
	return fmt.Errorf("container %s: %w", id, err)
}
