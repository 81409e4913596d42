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

// Addrs hands out the lowest free addresses of one subnet (not the network, gateway or
// broadcast address, nor one in Used) during a plan. Nothing is freed while a plan runs, so
// each search starts after the address handed out before, instead of checking the taken ones
// again (a node filled in one plan cost a quadratic number of checks).
type Addrs struct {
	Subnet string
	Used   map[netip.Addr]bool // taken; Next adds what it hands out
	last   netip.Addr
}

// Next returns the lowest free address and marks it taken.
func (a *Addrs) Next() (netip.Addr, error) {
	p, err := netip.ParsePrefix(a.Subnet)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("subnet %q: %w", a.Subnet, err)
	}
	p = p.Masked()
	start := p.Addr().Next().Next() // after the network address and the gateway
	if a.last.IsValid() && p.Contains(a.last) && !a.last.Less(start) {
		start = a.last.Next()
	}
	for ip := start; p.Contains(ip); ip = ip.Next() {
		if !p.Contains(ip.Next()) { // broadcast
			break
		}
		if !a.Used[ip] {
			a.Used[ip] = true
			a.last = ip
			return ip, nil
		}
	}
	return netip.Addr{}, fmt.Errorf("subnet %s: no free address", a.Subnet)
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
