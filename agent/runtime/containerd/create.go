package containerd

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"sync"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/identity"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"orch/agent/logs"
	"orch/agent/runtime"
)

// Create creates the container, its snapshot and its (not yet started) task. On failure
// nothing is left behind.
func (r *Runtime) Create(ctx context.Context, spec runtime.ContainerSpec) (retErr error) {
	ctx = r.ctx(ctx)
	id := spec.ID
	if id == "" {
		return fmt.Errorf("create container: empty id")
	}
	if spec.Def == nil {
		return fmt.Errorf("container %s: no container definition", id)
	}
	if _, busy := r.creating.LoadOrStore(id, true); busy {
		return fmt.Errorf("container %s: being created: %w", id, errdefs.ErrAlreadyExists)
	}
	defer r.creating.Delete(id)
	if _, err := r.client.LoadContainer(ctx, id); err == nil {
		return fmt.Errorf("container %s: %w", id, errdefs.ErrAlreadyExists)
	} else if !errdefs.IsNotFound(err) {
		return fmt.Errorf("container %s: %w", id, err)
	}
	// A snapshot without its container is left from a Create that was interrupted (agent
	// killed); its lease would keep it for a day and block this id.
	if err := r.removeSnapshot(ctx, id); err != nil {
		return err
	}
	name, err := normalizeRef(spec.Def.GetImage())
	if err != nil {
		return fmt.Errorf("container %s: image %q: %w", id, spec.Def.GetImage(), err)
	}
	img, err := r.client.GetImage(ctx, name)
	if err != nil {
		return fmt.Errorf("container %s: image %s (not pulled?): %w", id, name, err)
	}
	info, err := r.images.get(ctx, img)
	if err != nil {
		return fmt.Errorf("container %s: read image config of %s: %w", id, name, err)
	}
	specOpts, err := buildSpecOpts(spec, img, info.config.Config, r.initBinary)
	if err != nil {
		return fmt.Errorf("container %s: %w", id, err)
	}
	labels := maps.Clone(spec.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	// What client.WithImageStopSignal records, from the config read above instead of again.
	labels[client.StopSignalLabel] = cmp.Or(info.config.Config.StopSignal, "SIGTERM")

	// Order matters: the snapshot must exist before the spec options that read the image's
	// /etc/passwd.
	container, err := r.client.NewContainer(ctx, id,
		client.WithContainerLabels(labels),
		client.WithSnapshotter(snapshotter),
		withNewSnapshot(id, info.chain, img.Name()),
		client.WithNewSpec(specOpts...),
	)
	if err != nil {
		// The snapshot may have been prepared before the failure; without this it would stay
		// until NewContainer's lease expires.
		_ = r.removeSnapshot(context.WithoutCancel(ctx), id)
		return fmt.Errorf("container %s: create: %w", id, err)
	}
	defer func() {
		if retErr != nil {
			cctx := context.WithoutCancel(ctx)
			_ = container.Delete(cctx, client.WithSnapshotCleanup)
		}
	}()

	ioc, err := r.logIO(spec)
	if err != nil {
		return fmt.Errorf("container %s: %w", id, err)
	}
	t, err := container.NewTask(ctx, ioc)
	if err != nil {
		return fmt.Errorf("container %s: create task: %w", id, err)
	}
	r.created.Store(id, t)
	return nil
}

// imageInfo is what a container start needs of an image, fixed by its digest: its config
// and the chain id of its layers, which names the unpacked snapshot a container's is made on.
type imageInfo struct {
	config ocispec.Image
	chain  string
}

// imageInfos is a small cache of imageInfo by image digest.
type imageInfos struct {
	mu sync.Mutex
	m  map[digest.Digest]imageInfo
}

// maxImageInfos bounds the cache; past it, it starts over.
const maxImageInfos = 256

func (c *imageInfos) get(ctx context.Context, img client.Image) (imageInfo, error) {
	d := img.Target().Digest
	c.mu.Lock()
	info, ok := c.m[d]
	c.mu.Unlock()
	if ok {
		return info, nil
	}
	cfg, err := img.Spec(ctx)
	if err != nil {
		return info, err
	}
	info = imageInfo{config: cfg, chain: identity.ChainID(cfg.RootFS.DiffIDs).String()}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= maxImageInfos {
		c.m = map[digest.Digest]imageInfo{}
	}
	c.m[d] = info
	return info, nil
}

// withNewSnapshot is client.WithNewSnapshot with the parent's chain id from the cache: it
// prepares the container's writable snapshot on the image's unpacked layers (in the
// snapshotter chosen before it, WithSnapshotter).
func withNewSnapshot(id, chain, image string) client.NewContainerOpts {
	return func(ctx context.Context, c *client.Client, ctr *containers.Container) error {
		if _, err := c.SnapshotService(ctr.Snapshotter).Prepare(ctx, id, chain); err != nil {
			return err
		}
		ctr.SnapshotKey, ctr.Image = id, image
		return nil
	}
}

// logIO sends the container's stdout and stderr to the log driver (this binary, run by the
// shim), which writes <LogDir>/<container name>.log with rotation. Without a LogDir output is
// discarded.
func (r *Runtime) logIO(spec runtime.ContainerSpec) (cio.Creator, error) {
	if spec.LogDir == "" {
		return cio.NullIO, nil
	}
	dir, err := filepath.Abs(spec.LogDir)
	if err != nil {
		return nil, fmt.Errorf("log dir %s: %w", spec.LogDir, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("log dir: %w", err)
	}
	name := spec.Def.GetName()
	if name == "" {
		name = spec.ID
	}
	maxSize, maxFiles, err := logRotation(spec.Def.GetLogConfiguration().GetOptions())
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, name+".log")
	return cio.BinaryIO(r.logDriver, logs.DriverArgs(path, maxSize, maxFiles)), nil
}
