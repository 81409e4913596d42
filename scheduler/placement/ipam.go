package placement

import (
	"fmt"
	"net/netip"
)

// Gateway returns the first usable address of subnet: the host bridge's address.
func Gateway(subnet string) (netip.Addr, error) {
	p, err := netip.ParsePrefix(subnet)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("subnet %q: %w", subnet, err)
	}
	return p.Masked().Addr().Next(), nil
}

// NextIP returns the lowest address of subnet that is not the network, gateway or broadcast
// address and is not in used.
func NextIP(subnet string, used map[netip.Addr]bool) (netip.Addr, error) {
	return nextIP(subnet, used, netip.Addr{})
}

// Addrs hands out the lowest free addresses of one subnet during a plan. Nothing is freed
// while a plan runs, so each search starts after the address handed out before, instead of
// checking the taken ones again (a node filled in one plan cost a quadratic number of checks).
type Addrs struct {
	Subnet string
	Used   map[netip.Addr]bool // taken; Next adds what it hands out
	last   netip.Addr
}

// Next returns the lowest free address and marks it taken.
func (a *Addrs) Next() (netip.Addr, error) {
	ip, err := nextIP(a.Subnet, a.Used, a.last)
	if err != nil {
		return ip, err
	}
	a.Used[ip] = true
	a.last = ip
	return ip, nil
}

// nextIP is NextIP searching only above after (when valid).
func nextIP(subnet string, used map[netip.Addr]bool, after netip.Addr) (netip.Addr, error) {
	p, err := netip.ParsePrefix(subnet)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("subnet %q: %w", subnet, err)
	}
	p = p.Masked()
	start := p.Addr().Next().Next() // after the network address and the gateway
	if after.IsValid() && p.Contains(after) && !after.Less(start) {
		start = after.Next()
	}
	for a := start; p.Contains(a); a = a.Next() {
		if !p.Contains(a.Next()) { // broadcast
			break
		}
		if !used[a] {
			return a, nil
		}
	}
	return netip.Addr{}, fmt.Errorf("subnet %s: no free address", subnet)
}

// SubnetFor returns the n-th /24 of cidr.
func SubnetFor(cidr string, n int) (string, error) {
	p, err := netip.ParsePrefix(cidr)
	if err != nil {
		return "", fmt.Errorf("cidr %q: %w", cidr, err)
	}
	if p.Bits() > 24 || !p.Addr().Is4() {
		return "", fmt.Errorf("cidr %s: must be an IPv4 network of /24 or larger", cidr)
	}
	if n < 0 || n >= 1<<(24-p.Bits()) {
		return "", fmt.Errorf("cidr %s: has no /24 number %d", cidr, n)
	}
	b := p.Masked().Addr().As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8
	v += uint32(n) << 8
	a := netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), 0})
	return netip.PrefixFrom(a, 24).String(), nil
}

// Overlaps reports whether two CIDRs share any address.
func Overlaps(a, b string) bool {
	pa, err1 := netip.ParsePrefix(a)
	pb, err2 := netip.ParsePrefix(b)
	return err1 == nil && err2 == nil && pa.Overlaps(pb)
}

// SubnetSize is how many task addresses subnet has: all but the network, gateway and
// broadcast addresses.
func SubnetSize(subnet string) int {
	p, err := netip.ParsePrefix(subnet)
	if err != nil || !p.Addr().Is4() || p.Bits() > 30 {
		return 0
	}
	return 1<<(32-p.Bits()) - 3
}
