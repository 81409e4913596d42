package chaos

// The test network: a "switch" namespace holding a bridge, and one namespace per scheduler,
// for the agent and for the clients, each with a veth into the switch. Nothing is created in
// the machine's own namespace: the test process reaches the schedulers through sockets it opens
// inside the client namespace (dialer), and the agent reaches the test registry, which listens
// on the machine's loopback, through a forwarder listening on the agent namespace's loopback.
// Partitions are nftables drops inside the schedulers' namespaces.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"orch/test/harness"
)

// network is the test's private network.
type network struct {
	t      *testing.T
	suffix string
	subnet string // "10.211.N"
	sw     string // the switch namespace
	// nodes by role: "s1".."s3", "agent", "client".
	nodes map[string]*netNode
}

// netNode is one namespace attached to the switch.
type netNode struct {
	role string
	ns   string // ip netns name
	ip   string
}

// nsPath is where `ip netns` mounts the namespace.
func (n *netNode) nsPath() string { return "/run/netns/" + n.ns }

// hostByte is each role's last address byte.
var hostByte = map[string]int{"s1": 1, "s2": 2, "s3": 3, "agent": 21, "client": 100}

// newNetwork creates the switch and a namespace per role; its cleanup deletes them all, which
// also removes the veths, the bridges and any nftables table inside.
func newNetwork(t *testing.T, roles ...string) *network {
	t.Helper()
	sfx := harness.RandomSuffix()
	b, _ := strconv.ParseUint(sfx[:2], 16, 8) // a different subnet per run, to tell runs apart
	n := &network{t: t, suffix: sfx, subnet: fmt.Sprintf("10.211.%d", b), sw: "chaos-sw-" + sfx, nodes: map[string]*netNode{}}
	n.addNS(n.sw)
	mustRun(t, "ip", "-n", n.sw, "link", "set", "lo", "up")
	mustRun(t, "ip", "-n", n.sw, "link", "add", "br0", "type", "bridge")
	mustRun(t, "ip", "-n", n.sw, "link", "set", "br0", "up")
	for _, role := range roles {
		node := &netNode{role: role, ns: "chaos-" + role + "-" + sfx, ip: fmt.Sprintf("%s.%d", n.subnet, hostByte[role])}
		n.addNS(node.ns)
		port := "v" + role // inside the switch namespace: no collision with other runs
		mustRun(t, "ip", "-n", n.sw, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", node.ns)
		mustRun(t, "ip", "-n", n.sw, "link", "set", port, "master", "br0", "up")
		mustRun(t, "ip", "-n", node.ns, "link", "set", "lo", "up")
		mustRun(t, "ip", "-n", node.ns, "addr", "add", node.ip+"/24", "dev", "eth0")
		mustRun(t, "ip", "-n", node.ns, "link", "set", "eth0", "up")
		n.nodes[role] = node
	}
	return n
}

// addNS creates a named network namespace and registers its deletion.
func (n *network) addNS(name string) {
	n.t.Helper()
	mustRun(n.t, "ip", "netns", "add", name)
	n.t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			n.t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
}

// partition makes each scheduler of side drop every packet to and from the schedulers of
// other, and the other way round: a total, symmetric partition between the two groups. The
// clients keep reaching every scheduler. It replaces earlier rules of the namespaces involved.
func (n *network) partition(side, other []string) error {
	drop := map[string][]string{}
	for _, a := range side {
		for _, b := range other {
			drop[a] = append(drop[a], n.nodes[b].ip)
			drop[b] = append(drop[b], n.nodes[a].ip)
		}
	}
	var errs []error
	for role, ips := range drop {
		set := strings.Join(ips, ", ")
		rules := fmt.Sprintf(`table inet chaos
delete table inet chaos
table inet chaos {
	chain in {
		type filter hook input priority -10; policy accept;
		ip saddr { %[1]s } drop
	}
	chain out {
		type filter hook output priority -10; policy accept;
		ip daddr { %[1]s } drop
	}
}
`, set)
		cmd := exec.Command("ip", "netns", "exec", n.nodes[role].ns, "nft", "-f", "-")
		cmd.Stdin = strings.NewReader(rules)
		if out, err := cmd.CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("nft in %s: %v: %s", n.nodes[role].ns, err, out))
		}
	}
	return errors.Join(errs...)
}

// heal removes the partition rules from every scheduler namespace.
func (n *network) heal(roles ...string) error {
	var errs []error
	for _, role := range roles {
		cmd := exec.Command("ip", "netns", "exec", n.nodes[role].ns, "nft", "-f", "-")
		cmd.Stdin = strings.NewReader("table inet chaos\ndelete table inet chaos\n")
		if out, err := cmd.CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("nft in %s: %v: %s", n.nodes[role].ns, err, out))
		}
	}
	return errors.Join(errs...)
}

// inNetNS runs fn on an OS thread switched into the namespace at path. Sockets fn creates stay
// in that namespace wherever they are used later. The thread is given back to Go only if
// switching back worked; otherwise it is retired with its goroutine.
func inNetNS(path string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer orig.Close()
		target, err := os.Open(path)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("setns %s: %w", path, err)
			return
		}
		ferr := fn()
		if unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		errc <- ferr
	}()
	return <-errc
}

// dialer returns a gRPC context dialer whose connections are opened from the namespace of
// role.
func (n *network) dialer(role string) func(ctx context.Context, addr string) (net.Conn, error) {
	path := n.nodes[role].nsPath()
	return func(ctx context.Context, addr string) (net.Conn, error) {
		var conn net.Conn
		err := inNetNS(path, func() error {
			var err error
			conn, err = (&net.Dialer{}).DialContext(ctx, "tcp", addr)
			return err
		})
		return conn, err
	}
}

// forward listens on addr inside the namespace of role and relays every connection to the
// same address in the test's own namespace: the agent pulls from the test registry on
// 127.0.0.1 this way. It is closed at cleanup.
func (n *network) forward(role, addr string) {
	n.t.Helper()
	var l net.Listener
	if err := inNetNS(n.nodes[role].nsPath(), func() error {
		var err error
		l, err = net.Listen("tcp", addr)
		return err
	}); err != nil {
		n.t.Fatalf("listen on %s in %s: %v", addr, n.nodes[role].ns, err)
	}
	var wg sync.WaitGroup
	n.t.Cleanup(func() { l.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				relay(c, addr)
			}()
		}
	}()
}

// relay copies between c and a new connection to addr until either side closes.
func relay(c net.Conn, addr string) {
	defer c.Close()
	up, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return
	}
	defer up.Close()
	done := make(chan struct{}, 2)
	cp := func(dst, src net.Conn) {
		io.Copy(dst, src)
		if tc, ok := dst.(*net.TCPConn); ok {
			tc.CloseWrite()
		}
		done <- struct{}{}
	}
	go cp(up, c)
	go cp(c, up)
	<-done
	<-done
}

func mustRun(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
}
