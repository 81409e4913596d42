package bench

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/remotes/docker"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// The floor's own names, apart from orch's (containerd namespace "orch", bridges "orch*").
const (
	floorNamespace   = "orchbench-floor"
	floorBridge      = "floorbr0"
	floorSnapshotter = "overlayfs" // orch's snapshotter
	floorMemoryLimit = 32 << 20    // the task definition's memory: 32 MiB
)

// The floor's subnet, 10.255.0.0/16: the bridge has the gateway address, the i-th task the
// (i+2)-th address (taskIP).
var (
	floorGateway = net.IPv4(10, 255, 0, 1).To4()
	floorMask    = net.CIDRMask(16, 32)
)

// floor measures the least any orchestrator on this host must do to start the same task:
// a fresh named network namespace with a veth pair into a bridge and an IP, a containerd
// container (new snapshot, OCI spec with the netns path and memory limit), task create and
// task start. It uses containerd and netlink directly and no orch code.
type floor struct {
	cl       *client.Client
	image    string
	nsDir    string
	hostNS   netns.NsHandle
	host     *netlink.Handle
	bridgeIx int
	mtu      int
	seq      int
}

// floorTask is what one measurement created, for teardown.
type floorTask struct {
	id      string
	nsPath  string
	veth    string
	ctr     client.Container
	task    client.Task
	created bool // the veth was added
}

// newFloor connects to containerd in the floor's namespace, pulls and unpacks the image there,
// prepares the netns dir (a shared mount, as `ip netns add` and orch make theirs) and creates
// the bridge in the host netns.
func newFloor(ctx context.Context, ctrdAddr, image, nsDir, hostNSPath string) (_ *floor, err error) {
	f := &floor{image: image, nsDir: nsDir, hostNS: -1}
	defer func() {
		if err != nil {
			err = errors.Join(err, f.close())
		}
	}()
	if f.cl, err = client.New(ctrdAddr, client.WithDefaultNamespace(floorNamespace)); err != nil {
		return nil, fmt.Errorf("floor: containerd %s: %w", ctrdAddr, err)
	}
	resolver := docker.NewResolver(docker.ResolverOptions{
		Hosts: docker.ConfigureDefaultRegistries(docker.WithPlainHTTP(docker.MatchLocalhost)),
	})
	if _, err := f.cl.Pull(f.ctx(ctx), image, client.WithPullUnpack, client.WithPullSnapshotter(floorSnapshotter),
		client.WithResolver(resolver)); err != nil {
		return nil, fmt.Errorf("floor: pull %s: %w", image, err)
	}
	if err := sharedDir(nsDir); err != nil {
		return nil, fmt.Errorf("floor: netns dir %s: %w", nsDir, err)
	}
	if f.hostNS, err = netns.GetFromPath(hostNSPath); err != nil {
		return nil, fmt.Errorf("floor: open host netns %s: %w", hostNSPath, err)
	}
	if f.host, err = netlink.NewHandleAt(f.hostNS, unix.NETLINK_ROUTE); err != nil {
		return nil, fmt.Errorf("floor: netlink in host netns: %w", err)
	}
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: floorBridge}}
	if err := f.host.LinkAdd(br); err != nil {
		return nil, fmt.Errorf("floor: create bridge %s: %w", floorBridge, err)
	}
	link, err := f.host.LinkByName(floorBridge)
	if err != nil {
		return nil, fmt.Errorf("floor: bridge %s: %w", floorBridge, err)
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: floorGateway, Mask: floorMask}}
	if err := f.host.AddrAdd(link, addr); err != nil {
		return nil, fmt.Errorf("floor: bridge %s address: %w", floorBridge, err)
	}
	if err := f.host.LinkSetUp(link); err != nil {
		return nil, fmt.Errorf("floor: bridge %s up: %w", floorBridge, err)
	}
	f.bridgeIx, f.mtu = link.Attrs().Index, link.Attrs().MTU
	return f, nil
}

func (f *floor) ctx(ctx context.Context) context.Context {
	return namespaces.WithNamespace(ctx, floorNamespace)
}

// close removes the bridge and closes the handles. Containers left behind (an interrupted
// run) are deleted by containerd's Stop.
func (f *floor) close() error {
	var errs []error
	if f.host != nil {
		if link, err := f.host.LinkByName(floorBridge); err == nil {
			if err := f.host.LinkDel(link); err != nil {
				errs = append(errs, fmt.Errorf("floor: delete bridge %s: %w", floorBridge, err))
			}
		}
		f.host.Close()
	}
	if f.hostNS >= 0 {
		f.hostNS.Close()
	}
	if f.cl != nil {
		if err := f.cl.Close(); err != nil {
			errs = append(errs, fmt.Errorf("floor: close containerd client: %w", err))
		}
	}
	return errors.Join(errs...)
}

// runOnce starts one task, timed until task Start returns, and tears it down (not timed).
func (f *floor) runOnce(ctx context.Context) (time.Duration, error) {
	ctx = f.ctx(ctx)
	i := f.seq
	f.seq++
	ft := &floorTask{id: fmt.Sprintf("floor-%d", i), veth: fmt.Sprintf("fv%d", i)}
	ft.nsPath = filepath.Join(f.nsDir, ft.id)
	start := time.Now()
	err := f.start(ctx, ft, taskIP(i))
	elapsed := time.Since(start)
	if tdErr := f.teardown(context.WithoutCancel(ctx), ft); tdErr != nil {
		err = errors.Join(err, tdErr)
	}
	if err != nil {
		return 0, err
	}
	return elapsed, nil
}

// taskIP is the address of the i-th floor task in 10.255.0.0/16, after the gateway.
func taskIP(i int) net.IP {
	n := (i % 65000) + 2
	return net.IPv4(10, 255, byte(n>>8), byte(n)).To4()
}

// start is the timed part: netns, veth, addresses and route, container, task create, start.
func (f *floor) start(ctx context.Context, ft *floorTask, ip net.IP) error {
	if err := createNetNS(ft.nsPath); err != nil {
		return fmt.Errorf("floor %s: netns: %w", ft.id, err)
	}
	if err := f.plumb(ft, ip); err != nil {
		return fmt.Errorf("floor %s: %w", ft.id, err)
	}
	img, err := f.cl.GetImage(ctx, f.image)
	if err != nil {
		return fmt.Errorf("floor %s: image %s: %w", ft.id, f.image, err)
	}
	ft.ctr, err = f.cl.NewContainer(ctx, ft.id,
		client.WithSnapshotter(floorSnapshotter),
		client.WithNewSnapshot(ft.id, img),
		client.WithNewSpec(
			oci.WithImageConfig(img),
			oci.WithLinuxNamespace(specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: ft.nsPath}),
			oci.WithMemoryLimit(floorMemoryLimit),
		),
	)
	if err != nil {
		return fmt.Errorf("floor %s: create container: %w", ft.id, err)
	}
	if ft.task, err = ft.ctr.NewTask(ctx, cio.NullIO); err != nil {
		return fmt.Errorf("floor %s: create task: %w", ft.id, err)
	}
	if err := ft.task.Start(ctx); err != nil {
		return fmt.Errorf("floor %s: start task: %w", ft.id, err)
	}
	return nil
}

// plumb creates the veth pair (host end into the bridge, eth0 in the task netns) and gives
// eth0 its address and the default route; lo and both ends up.
func (f *floor) plumb(ft *floorTask, ip net.IP) error {
	nsh, err := netns.GetFromPath(ft.nsPath)
	if err != nil {
		return fmt.Errorf("open netns: %w", err)
	}
	defer nsh.Close()
	th, err := netlink.NewHandleAt(nsh, unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("netlink in netns: %w", err)
	}
	defer th.Close()
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: ft.veth, MTU: f.mtu, MasterIndex: f.bridgeIx},
		PeerName:      "eth0",
		PeerNamespace: netlink.NsFd(int(nsh)),
	}
	if err := f.host.LinkAdd(veth); err != nil {
		return fmt.Errorf("create veth %s: %w", ft.veth, err)
	}
	ft.created = true
	if err := f.host.LinkSetUp(veth); err != nil {
		return fmt.Errorf("set %s up: %w", ft.veth, err)
	}
	eth0, err := th.LinkByName("eth0")
	if err != nil {
		return fmt.Errorf("eth0: %w", err)
	}
	if err := th.AddrAdd(eth0, &netlink.Addr{IPNet: &net.IPNet{IP: ip, Mask: floorMask}}); err != nil {
		return fmt.Errorf("eth0 address %s: %w", ip, err)
	}
	if err := th.LinkSetUp(eth0); err != nil {
		return fmt.Errorf("set eth0 up: %w", err)
	}
	lo, err := th.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("lo: %w", err)
	}
	if err := th.LinkSetUp(lo); err != nil {
		return fmt.Errorf("set lo up: %w", err)
	}
	if err := th.RouteAdd(&netlink.Route{LinkIndex: eth0.Attrs().Index, Gw: floorGateway}); err != nil {
		return fmt.Errorf("default route via %s: %w", floorGateway, err)
	}
	return nil
}

// teardown removes whatever start created: the task (killed), the container with its
// snapshot, the veth pair and the netns. Already gone is success.
func (f *floor) teardown(ctx context.Context, ft *floorTask) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var errs []error
	if ft.task != nil {
		if _, err := ft.task.Delete(ctx, client.WithProcessKill); err != nil && !errdefs.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("floor %s: delete task: %w", ft.id, err))
		}
	}
	if ft.ctr != nil {
		if err := ft.ctr.Delete(ctx, client.WithSnapshotCleanup); err != nil && !errdefs.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("floor %s: delete container: %w", ft.id, err))
		}
	}
	if ft.created {
		if link, err := f.host.LinkByName(ft.veth); err == nil {
			if err := f.host.LinkDel(link); err != nil {
				errs = append(errs, fmt.Errorf("floor %s: delete veth %s: %w", ft.id, ft.veth, err))
			}
		}
	}
	if err := unix.Unmount(ft.nsPath, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		errs = append(errs, fmt.Errorf("floor %s: unmount netns: %w", ft.id, err))
	}
	if err := os.Remove(ft.nsPath); err != nil && !errors.Is(err, fs.ErrNotExist) {
		errs = append(errs, fmt.Errorf("floor %s: remove netns file: %w", ft.id, err))
	}
	return errors.Join(errs...)
}

// createNetNS makes path a new network namespace that persists without processes, as
// `ip netns add` does: a locked thread unshares CLONE_NEWNET and its namespace file is
// bind-mounted onto path. The thread is never switched back; its goroutine exits locked, so
// the Go runtime discards it.
func createNetNS(path string) error {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CREAT|unix.O_EXCL, 0o444)
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	unix.Close(fd)
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("unshare: %w", err)
			return
		}
		src := fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
		if err := unix.Mount(src, path, "none", unix.MS_BIND, ""); err != nil {
			errc <- fmt.Errorf("bind-mount %s on %s: %w", src, path, err)
			return
		}
		errc <- nil
	}()
	if err := <-errc; err != nil {
		_ = os.Remove(path)
		return err
	}
	return nil
}

// sharedDir creates dir and makes it a shared bind mount of itself, as `ip netns` does for
// /run/netns.
func sharedDir(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := unix.Mount(dir, dir, "none", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind-mount %s on itself: %w", dir, err)
	}
	if err := unix.Mount("", dir, "none", unix.MS_SHARED|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("make %s shared: %w", dir, err)
	}
	return nil
}
