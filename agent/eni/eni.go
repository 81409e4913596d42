// Package eni owns the node's task networking: one named network namespace per task (its
// "ENI"), a veth pair whose host end joins the cluster's bridge, the task's IP, MAC and
// default route inside, and the nftables rules that masquerade a cluster's traffic to the
// rest of the world while keeping clusters on one host apart.
//
// It is the only package of orch that imports netlink, netns and nftables. Everything it
// creates carries a name derived from the task id or the cluster name (NetNSName,
// HostVethName, BridgeName), so a restarted agent finds and adopts what an earlier run left:
// Setup and EnsureBridge converge an existing state instead of failing on it, and Teardown and
// DeleteBridge treat "already gone" as success (CNI's cmdDel contract).
//
// Host-side work (bridges, host veth ends, nftables, sysctls) happens in one "host" network
// namespace: the agent's own by default, or the one given with WithHostNetNS so that tests and
// multi-node simulations never touch the machine's root namespace. Work inside a namespace is
// done through a netlink.Handle or an nftables.Conn bound to it; the few things that need a
// thread switched into a namespace (creating one, writing a per-namespace sysctl) run on a
// dedicated locked OS thread (see doInNetNS).
package eni

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"orch/pkg/eniname"
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// DefaultNetNSDir is where named task network namespaces are bind-mounted, as `ip netns` does.
const DefaultNetNSDir = "/run/netns"

// BridgePrefix starts the name of every bridge orch owns. The nftables rules rely on it: a
// cluster's traffic may not be forwarded to another interface with this prefix, and traffic
// leaving through an interface without it is masqueraded.
const BridgePrefix = "orch"

// NetNSPrefix starts the name of every task network namespace orch creates.
const NetNSPrefix = "orch-"

// Sentinel errors; returned errors wrap them with the ids involved.
var (
	// ErrInvalid is returned for a malformed Spec or argument.
	ErrInvalid = errors.New("invalid argument")
	// ErrBridgeNotFound is returned by Setup when the task's bridge does not exist (call
	// EnsureBridge first) or is not a bridge.
	ErrBridgeNotFound = errors.New("bridge not found")
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("eni manager closed")
)

// Manager creates and removes task ENIs and cluster bridges on one host. It is safe for
// concurrent use.
type Manager struct {
	hostNSPath string
	netnsDir   string
	log        *slog.Logger

	// mu serialises all operations. Each one is a handful of netlink messages (milliseconds),
	// and serialising keeps the look-then-change sequences (adopt or repair a veth, replace a
	// bridge's nftables rules) free of races without per-object locks. It also guards host,
	// whose netlink.Handle caches state and is not meant for concurrent use.
	mu     sync.Mutex
	hostNS netns.NsHandle
	host   *netlink.Handle
	closed bool
}

// Opt configures a Manager.
type Opt func(*Manager)

// WithHostNetNS makes the Manager do all host-side work (bridge, host veth ends, nftables,
// ip_forward) in the network namespace at path instead of the current one. Tests and
// multi-node simulations use it so that each "host" is its own namespace.
func WithHostNetNS(path string) Opt { return func(m *Manager) { m.hostNSPath = path } }

// WithNetNSDir sets where named task network namespaces are bind-mounted (default
// DefaultNetNSDir).
func WithNetNSDir(dir string) Opt { return func(m *Manager) { m.netnsDir = dir } }

// WithLogger sets the logger for adoption and repair events (default slog.Default()).
func WithLogger(l *slog.Logger) Opt { return func(m *Manager) { m.log = l } }

// New opens the host network namespace and prepares the netns directory (created if missing
// and made a shared mount point, as `ip netns add` does, so that unmounting a task namespace
// propagates into mount namespaces that copied it).
func New(opts ...Opt) (*Manager, error) {
	m := &Manager{}
	for _, o := range opts {
		o(m)
	}
	if m.netnsDir == "" {
		m.netnsDir = DefaultNetNSDir
	}
	if m.log == nil {
		m.log = slog.Default()
	}
	var err error
	if m.hostNSPath != "" {
		m.hostNS, err = netns.GetFromPath(m.hostNSPath)
	} else {
		m.hostNS, err = netns.Get()
	}
	if err != nil {
		return nil, fmt.Errorf("eni: open host netns %q: %w", m.hostNSPath, err)
	}
	m.host, err = netlink.NewHandleAt(m.hostNS, unix.NETLINK_ROUTE)
	if err != nil {
		m.hostNS.Close()
		return nil, fmt.Errorf("eni: netlink handle in host netns %q: %w", m.hostNSPath, err)
	}
	if err := ensureSharedDir(m.netnsDir); err != nil {
		m.host.Close()
		m.hostNS.Close()
		return nil, fmt.Errorf("eni: netns dir %s: %w", m.netnsDir, err)
	}
	return m, nil
}

// Close releases the Manager's handles. It leaves every namespace, link and rule in place:
// they belong to running tasks, which outlive the agent.
func (m *Manager) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil
	}
	m.closed = true
	m.host.Close()
	return m.hostNS.Close()
}

// The names of a task's network pieces come from pkg/eniname, which the scheduler uses too to
// record them in the task's ENI attachment.

// NetNSName is the name of the task's network namespace ("orch-" + 12 characters of the id).
func NetNSName(taskID string) string { return eniname.NetNS(taskID) }

// HostVethName is the host end of the task's veth ("ve" + 12 characters, within IFNAMSIZ).
func HostVethName(taskID string) string { return eniname.HostVeth(taskID) }

// MACFor is the task's locally administered MAC: the same task always gets the same MAC, so a
// repaired ENI keeps the address its peers have cached.
func MACFor(taskID string) string { return eniname.MAC(taskID) }

// BridgeName is the bridge of a cluster ("orch" + 8 hex characters of a hash of its name).
func BridgeName(cluster string) string { return eniname.Bridge(cluster) }

// hashMAC is 02 followed by five bytes of SHA-256(s).
func hashMAC(s string) net.HardwareAddr {
	sum := sha256.Sum256([]byte(s))
	mac := make(net.HardwareAddr, 6)
	mac[0] = 0x02
	copy(mac[1:], sum[:5])
	return mac
}

// retryDump re-runs a netlink dump that the kernel interrupted because the dumped table
// changed meanwhile (netlink >= 1.2 returns partial results with ErrDumpInterrupted).
func retryDump[T any](fn func() (T, error)) (T, error) {
	var (
		v   T
		err error
	)
	for range 5 {
		v, err = fn()
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return v, err
		}
	}
	return v, err
}

// linkByName returns the link or (nil, nil) when it does not exist.
func linkByName(h *netlink.Handle, name string) (netlink.Link, error) {
	l, err := retryDump(func() (netlink.Link, error) { return h.LinkByName(name) })
	if err != nil {
		if isNotFound(err) {
			return nil, nil
		}
		return nil, err
	}
	return l, nil
}

// isNotFound reports whether a netlink error means the object is already gone.
func isNotFound(err error) bool {
	var lnf netlink.LinkNotFoundError
	return errors.As(err, &lnf) || errors.Is(err, unix.ENODEV) || errors.Is(err, unix.ENOENT) ||
		errors.Is(err, unix.ESRCH)
}
