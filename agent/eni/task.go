package eni

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// TaskIfName is the name of the task's interface inside its network namespace.
const TaskIfName = "eth0"

// Spec describes one task's ENI.
type Spec struct {
	TaskID    string // 32 hex chars; at least the first 12 are used in names
	NetNS     string // netns name; default NetNSName(TaskID)
	Bridge    string // the cluster's bridge, made by EnsureBridge
	IP        string // "10.64.3.7"
	PrefixLen int    // 24
	Gateway   string // "10.64.3.1", inside IP/PrefixLen
	MAC       string // "02:..."; default MACFor(TaskID)
}

// spec is a validated Spec with its values parsed.
type spec struct {
	Spec
	addr *net.IPNet
	gw   net.IP
	mac  net.HardwareAddr
}

func validTaskID(id string) error {
	if len(id) < 12 || strings.Trim(id, "0123456789abcdefABCDEF") != "" {
		return fmt.Errorf("eni: task id %q must be at least 12 hex characters: %w", id, ErrInvalid)
	}
	return nil
}

func validNetNSName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") {
		return fmt.Errorf("eni: netns name %q: %w", name, ErrInvalid)
	}
	return nil
}

// parse validates s and fills in defaults.
func (s Spec) parse() (spec, error) {
	if err := validTaskID(s.TaskID); err != nil {
		return spec{}, err
	}
	if s.NetNS == "" {
		s.NetNS = NetNSName(s.TaskID)
	}
	if s.MAC == "" {
		s.MAC = MACFor(s.TaskID)
	}
	p := spec{Spec: s}
	bad := func(what string, v any) (spec, error) {
		return spec{}, fmt.Errorf("eni: task %s: %s %v: %w", s.TaskID, what, v, ErrInvalid)
	}
	if err := validNetNSName(s.NetNS); err != nil {
		return spec{}, fmt.Errorf("eni: task %s: %w", s.TaskID, err)
	}
	if err := validBridge(s.Bridge); err != nil {
		return spec{}, fmt.Errorf("eni: task %s: %w", s.TaskID, err)
	}
	ip := net.ParseIP(s.IP).To4()
	if ip == nil {
		return bad("IP is not IPv4:", s.IP)
	}
	if s.PrefixLen < 1 || s.PrefixLen > 31 {
		return bad("prefix length", s.PrefixLen)
	}
	p.addr = &net.IPNet{IP: ip, Mask: net.CIDRMask(s.PrefixLen, 32)}
	p.gw = net.ParseIP(s.Gateway).To4()
	if p.gw == nil || p.gw.Equal(ip) || !p.addr.Contains(p.gw) {
		return bad("gateway must be another address in "+p.addr.String()+":", s.Gateway)
	}
	mac, err := net.ParseMAC(s.MAC)
	if err != nil || len(mac) != 6 || mac[0]&1 != 0 {
		return bad("MAC is not a unicast Ethernet address:", s.MAC)
	}
	p.mac = mac
	return p, nil
}

// Setup creates the task's ENI and returns its netns path: the named netns, a veth whose host
// end (HostVethName) is attached to the bridge and up, and whose task end is eth0 in the
// netns with the MAC and IP/PrefixLen, up; loopback up; a default route via Gateway.
//
// It converges rather than creates: after an agent restart an ENI that exists as specified is
// adopted unchanged, a veth pair that is whole is repaired in place (address, MAC, master,
// link state, route), and a broken pair (one end missing, or ends that are not each other's
// peer) is deleted and recreated.
func (m *Manager) Setup(ctx context.Context, s Spec) (netnsPath string, err error) {
	p, err := s.parse()
	if err != nil {
		return "", err
	}
	if err := ctx.Err(); err != nil {
		return "", err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return "", ErrClosed
	}
	wrap := func(what string, err error) error {
		return fmt.Errorf("eni: task %s: %s: %w", p.TaskID, what, err)
	}

	br, err := linkByName(m.host, p.Bridge)
	if err != nil {
		return "", wrap("bridge "+p.Bridge, err)
	}
	if br == nil || br.Type() != "bridge" {
		return "", wrap("bridge "+p.Bridge, ErrBridgeNotFound)
	}

	path := filepath.Join(m.netnsDir, p.NetNS)
	created, err := ensureNetNS(path)
	if err != nil {
		return "", wrap("netns "+path, err)
	}
	if created {
		m.log.Debug("eni: created netns", "task_id", p.TaskID, "netns", path)
	}
	nsh, err := netns.GetFromPath(path)
	if err != nil {
		return "", wrap("open netns "+path, err)
	}
	defer nsh.Close()
	th, err := netlink.NewHandleAt(nsh, unix.NETLINK_ROUTE)
	if err != nil {
		return "", wrap("netlink handle in netns "+path, err)
	}
	defer th.Close()

	if err := ctx.Err(); err != nil {
		return "", err
	}
	hv, eth0, err := m.ensureVeth(th, nsh, p, br)
	if err != nil {
		return "", wrap("veth", err)
	}
	if err := m.configureHostEnd(hv, br); err != nil {
		return "", wrap("host veth "+hv.Attrs().Name, err)
	}
	if err := configureTaskEnd(th, eth0, p); err != nil {
		return "", wrap("netns "+path, err)
	}
	return path, nil
}

// ensureVeth returns the task's veth pair, adopting a whole one and recreating a broken one.
func (m *Manager) ensureVeth(th *netlink.Handle, nsh netns.NsHandle, p spec, br netlink.Link) (hv, eth0 netlink.Link, err error) {
	hostName := HostVethName(p.TaskID)
	hv, err = linkByName(m.host, hostName)
	if err != nil {
		return nil, nil, fmt.Errorf("lookup %s: %w", hostName, err)
	}
	eth0, err = linkByName(th, TaskIfName)
	if err != nil {
		return nil, nil, fmt.Errorf("lookup %s in netns: %w", TaskIfName, err)
	}
	if isPair(hv, eth0) {
		return hv, eth0, nil
	}
	if hv != nil || eth0 != nil {
		m.log.Info("eni: recreating broken veth pair", "task_id", p.TaskID,
			"host_end", hv != nil, "task_end", eth0 != nil)
	}
	// Deleting either end of a veth deletes its peer, wherever that is.
	if hv != nil {
		if err := m.host.LinkDel(hv); err != nil && !isNotFound(err) {
			return nil, nil, fmt.Errorf("delete stale %s: %w", hostName, err)
		}
	}
	if eth0 != nil {
		if err := th.LinkDel(eth0); err != nil && !isNotFound(err) {
			return nil, nil, fmt.Errorf("delete stale %s in netns: %w", TaskIfName, err)
		}
	}
	// The task end is created directly inside the netns, so it can be named eth0 at once
	// without colliding with anything in the host netns.
	veth := &netlink.Veth{
		LinkAttrs:        netlink.LinkAttrs{Name: hostName, MTU: br.Attrs().MTU},
		PeerName:         TaskIfName,
		PeerHardwareAddr: p.mac,
		PeerNamespace:    netlink.NsFd(int(nsh)),
	}
	if err := m.host.LinkAdd(veth); err != nil {
		return nil, nil, fmt.Errorf("create %s (peer %s in netns): %w", hostName, TaskIfName, err)
	}
	if hv, err = linkByName(m.host, hostName); err == nil && hv == nil {
		err = unix.ENODEV
	}
	if err != nil {
		return nil, nil, fmt.Errorf("lookup %s after create: %w", hostName, err)
	}
	if eth0, err = linkByName(th, TaskIfName); err == nil && eth0 == nil {
		err = unix.ENODEV
	}
	if err != nil {
		return nil, nil, fmt.Errorf("lookup %s in netns after create: %w", TaskIfName, err)
	}
	return hv, eth0, nil
}

// isPair reports whether hv (host netns) and eth0 (task netns) are the two ends of one veth.
// IFLA_LINK of a veth end is its peer's ifindex (in the peer's netns).
func isPair(hv, eth0 netlink.Link) bool {
	if hv == nil || eth0 == nil || hv.Type() != "veth" || eth0.Type() != "veth" {
		return false
	}
	return hv.Attrs().ParentIndex == eth0.Attrs().Index && eth0.Attrs().ParentIndex == hv.Attrs().Index
}

func (m *Manager) configureHostEnd(hv, br netlink.Link) error {
	if hv.Attrs().MasterIndex != br.Attrs().Index {
		if err := m.host.LinkSetMasterByIndex(hv, br.Attrs().Index); err != nil {
			return fmt.Errorf("attach to %s: %w", br.Attrs().Name, err)
		}
	}
	if err := m.host.LinkSetUp(hv); err != nil {
		return fmt.Errorf("set up: %w", err)
	}
	return nil
}

func configureTaskEnd(th *netlink.Handle, eth0 netlink.Link, p spec) error {
	if eth0.Attrs().HardwareAddr.String() != p.mac.String() {
		if err := th.LinkSetHardwareAddr(eth0, p.mac); err != nil {
			return fmt.Errorf("set %s MAC %s: %w", TaskIfName, p.mac, err)
		}
	}
	if err := ensureOnlyAddr(th, eth0, p.addr); err != nil {
		return fmt.Errorf("%s address %s: %w", TaskIfName, p.addr, err)
	}
	if err := th.LinkSetUp(eth0); err != nil {
		return fmt.Errorf("set %s up: %w", TaskIfName, err)
	}
	lo, err := linkByName(th, "lo")
	if err == nil && lo == nil {
		err = unix.ENODEV
	}
	if err != nil {
		return fmt.Errorf("lookup lo: %w", err)
	}
	if err := th.LinkSetUp(lo); err != nil {
		return fmt.Errorf("set lo up: %w", err)
	}
	// Replace, not add: idempotent, and it fixes a default route left with another gateway.
	route := &netlink.Route{LinkIndex: eth0.Attrs().Index, Gw: p.gw, Scope: netlink.SCOPE_UNIVERSE}
	if err := th.RouteReplace(route); err != nil {
		return fmt.Errorf("default route via %s: %w", p.gw, err)
	}
	return nil
}

// Teardown removes the task's ENI: the host veth (which removes its peer), then the netns
// (lazily unmounted, so containers still inside keep it until they exit, and its file
// removed). Only TaskID and NetNS of s are used. Already gone is success.
func (m *Manager) Teardown(ctx context.Context, s Spec) error {
	if err := validTaskID(s.TaskID); err != nil {
		return err
	}
	if s.NetNS == "" {
		s.NetNS = NetNSName(s.TaskID)
	}
	if err := validNetNSName(s.NetNS); err != nil {
		return fmt.Errorf("eni: task %s: %w", s.TaskID, err)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}

	hostName := HostVethName(s.TaskID)
	hv, err := linkByName(m.host, hostName)
	if err != nil {
		return fmt.Errorf("eni: task %s: lookup %s: %w", s.TaskID, hostName, err)
	}
	if hv != nil {
		if err := m.host.LinkDel(hv); err != nil && !isNotFound(err) {
			return fmt.Errorf("eni: task %s: delete %s: %w", s.TaskID, hostName, err)
		}
	}
	path := filepath.Join(m.netnsDir, s.NetNS)
	if err := deleteTaskLink(path); err != nil {
		return fmt.Errorf("eni: task %s: netns %s: %w", s.TaskID, path, err)
	}
	if err := removeNetNS(path); err != nil {
		return fmt.Errorf("eni: task %s: netns %s: %w", s.TaskID, path, err)
	}
	return nil
}

// deleteTaskLink deletes eth0 inside the netns at path if it is still there (its host end was
// already gone): a container may keep the netns alive after it is unmounted, and an orphan
// interface with the task's address must not outlive the task.
func deleteTaskLink(path string) error {
	ok, err := isNetNS(path)
	if err != nil || !ok {
		return err
	}
	nsh, err := netns.GetFromPath(path)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return err
	}
	defer nsh.Close()
	th, err := netlink.NewHandleAt(nsh, unix.NETLINK_ROUTE)
	if err != nil {
		return err
	}
	defer th.Close()
	eth0, err := linkByName(th, TaskIfName)
	if err != nil || eth0 == nil {
		return err
	}
	if err := th.LinkDel(eth0); err != nil && !isNotFound(err) {
		return fmt.Errorf("delete %s: %w", TaskIfName, err)
	}
	return nil
}
