package eni

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// EnsureBridge makes bridge exist in the host netns with exactly the gateway address
// gatewayCIDR (e.g. "10.64.3.1/24"), up; enables IPv4 forwarding in the host netns; and
// installs the bridge's nftables rules: masquerade traffic from clusterCIDR that leaves
// through an interface whose name does not start with "orch", and drop traffic forwarded from
// this bridge to any other "orch" interface. It adopts and repairs what exists, so it is safe
// to call at every agent start.
func (m *Manager) EnsureBridge(ctx context.Context, bridge, gatewayCIDR, clusterCIDR string) error {
	if err := validBridge(bridge); err != nil {
		return err
	}
	gw, err := netlink.ParseAddr(gatewayCIDR)
	if err != nil || gw.IP.To4() == nil {
		return fmt.Errorf("eni: bridge %s: gateway %q is not an IPv4 CIDR: %w", bridge, gatewayCIDR, ErrInvalid)
	}
	_, cluster, err := net.ParseCIDR(clusterCIDR)
	if err != nil || cluster.IP.To4() == nil {
		return fmt.Errorf("eni: bridge %s: cluster CIDR %q is not an IPv4 CIDR: %w", bridge, clusterCIDR, ErrInvalid)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}

	br, err := m.ensureBridgeLink(bridge)
	if err != nil {
		return fmt.Errorf("eni: bridge %s: %w", bridge, err)
	}
	if err := m.ensureOnlyAddr(br, gw); err != nil {
		return fmt.Errorf("eni: bridge %s: address %s: %w", bridge, gatewayCIDR, err)
	}
	if err := m.host.LinkSetUp(br); err != nil {
		return fmt.Errorf("eni: bridge %s: set up: %w", bridge, err)
	}
	if err := doInNetNS(m.hostNS, enableIPv4Forwarding); err != nil {
		return fmt.Errorf("eni: bridge %s: enable ip_forward: %w", bridge, err)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := m.ensureRules(bridge, cluster); err != nil {
		return fmt.Errorf("eni: bridge %s: nftables: %w", bridge, err)
	}
	return nil
}

// DeleteBridge removes the bridge's nftables rules (and the orch table once no bridge has
// rules left) and the bridge itself. Task veths still attached are detached, not deleted.
// Already gone is success.
func (m *Manager) DeleteBridge(ctx context.Context, bridge string) error {
	if err := validBridge(bridge); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	if err := m.deleteRules(bridge); err != nil {
		return fmt.Errorf("eni: bridge %s: nftables: %w", bridge, err)
	}
	br, err := linkByName(m.host, bridge)
	if err != nil {
		return fmt.Errorf("eni: bridge %s: lookup: %w", bridge, err)
	}
	if br == nil {
		return nil
	}
	if br.Type() != "bridge" {
		return fmt.Errorf("eni: %s is a %s, not a bridge: %w", bridge, br.Type(), ErrInvalid)
	}
	if err := m.host.LinkDel(br); err != nil && !isNotFound(err) {
		return fmt.Errorf("eni: bridge %s: delete: %w", bridge, err)
	}
	return nil
}

func validBridge(bridge string) error {
	if !strings.HasPrefix(bridge, BridgePrefix) || len(bridge) > unix.IFNAMSIZ-1 ||
		strings.ContainsAny(bridge, "/: \t\n") {
		return fmt.Errorf("eni: bridge name %q must start with %q and have at most 15 characters: %w",
			bridge, BridgePrefix, ErrInvalid)
	}
	return nil
}

// ensureBridgeLink returns the bridge, creating it if missing. A new bridge gets a fixed MAC
// derived from its name: otherwise Linux gives it the lowest MAC of its ports, which changes
// as tasks come and go and makes the tasks' ARP entry for the gateway stale.
func (m *Manager) ensureBridgeLink(name string) (netlink.Link, error) {
	l, err := linkByName(m.host, name)
	if err != nil {
		return nil, fmt.Errorf("lookup: %w", err)
	}
	if l == nil {
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{
			Name:         name,
			HardwareAddr: hashMAC("bridge:" + name),
		}}
		if err := m.host.LinkAdd(br); err != nil && !errors.Is(err, unix.EEXIST) {
			return nil, fmt.Errorf("create: %w", err)
		}
		if l, err = linkByName(m.host, name); err != nil || l == nil {
			return nil, fmt.Errorf("lookup after create: %w", errors.Join(err, unix.ENODEV))
		}
	}
	if l.Type() != "bridge" {
		return nil, fmt.Errorf("exists as a %s, not a bridge: %w", l.Type(), ErrInvalid)
	}
	return l, nil
}

// ensureOnlyAddr leaves want as the link's only IPv4 address: the gateway of a bridge may
// have changed while the agent was down (a new node subnet), and a stale one would keep
// routing a subnet that is no longer ours to this bridge.
func (m *Manager) ensureOnlyAddr(l netlink.Link, want *netlink.Addr) error {
	return ensureOnlyAddr(m.host, l, want.IPNet)
}

func ensureOnlyAddr(h *netlink.Handle, l netlink.Link, want *net.IPNet) error {
	addrs, err := retryDump(func() ([]netlink.Addr, error) { return h.AddrList(l, netlink.FAMILY_V4) })
	if err != nil {
		return fmt.Errorf("list addresses: %w", err)
	}
	have := false
	for _, a := range addrs {
		if sameIPNet(a.IPNet, want) {
			have = true
			continue
		}
		if err := h.AddrDel(l, &a); err != nil && !isNotFound(err) && !errors.Is(err, unix.EADDRNOTAVAIL) {
			return fmt.Errorf("remove stale address %s: %w", a.IPNet, err)
		}
	}
	if have {
		return nil
	}
	if err := h.AddrAdd(l, &netlink.Addr{IPNet: want}); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("add: %w", err)
	}
	return nil
}

func sameIPNet(a, b *net.IPNet) bool {
	if a == nil || b == nil {
		return a == b
	}
	ao, _ := a.Mask.Size()
	bo, _ := b.Mask.Size()
	return a.IP.Equal(b.IP) && ao == bo
}

// enableIPv4Forwarding sets net.ipv4.ip_forward to 1 in the calling thread's network
// namespace (the /proc/sys/net view follows the namespace of the thread that opens it).
func enableIPv4Forwarding() error {
	const p = "/proc/sys/net/ipv4/ip_forward"
	cur, err := os.ReadFile(p)
	if err != nil {
		return err
	}
	if strings.TrimSpace(string(cur)) == "1" {
		return nil
	}
	return os.WriteFile(p, []byte("1"), 0o644)
}
