package eni

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("eni: test needs root (creates network namespaces, veths, bridges and nftables rules)")
	}
}

func randHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, (n+1)/2)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)[:n]
}

// testHost is a simulated host: its own network namespace (bind-mounted in a temp dir, never
// the machine's root netns) and a Manager working in it with a temp netns dir.
type testHost struct {
	m        *Manager
	nsPath   string
	netnsDir string
}

func newTestHost(t *testing.T) *testHost {
	t.Helper()
	requireRoot(t)
	hostDir := t.TempDir()
	netnsDir := t.TempDir()
	h := &testHost{nsPath: filepath.Join(hostDir, "host-"+randHex(t, 8)), netnsDir: netnsDir}
	if err := createNetNS(h.nsPath); err != nil {
		t.Fatalf("create host netns: %v", err)
	}
	// Removing the host netns removes every bridge, veth and nftables rule in it.
	t.Cleanup(func() {
		if err := removeNetNS(h.nsPath); err != nil {
			t.Errorf("remove host netns: %v", err)
		}
	})
	m, err := New(WithHostNetNS(h.nsPath), WithNetNSDir(netnsDir))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	// New made netnsDir a mount point; undo it (and remove any task netns a failed test left)
	// before t.TempDir removes the directory.
	t.Cleanup(func() {
		entries, _ := os.ReadDir(netnsDir)
		for _, e := range entries {
			if err := removeNetNS(filepath.Join(netnsDir, e.Name())); err != nil {
				t.Errorf("remove leftover netns: %v", err)
			}
		}
		if err := unix.Unmount(netnsDir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", netnsDir, err)
		}
	})
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	h.m = m
	return h
}

// task sets up a task ENI and registers its teardown.
func (h *testHost) task(t *testing.T, bridge, ip, gw string) (Spec, string) {
	t.Helper()
	s := Spec{TaskID: randHex(t, 32), Bridge: bridge, IP: ip, PrefixLen: 24, Gateway: gw}
	s.NetNS = NetNSName(s.TaskID)
	t.Cleanup(func() {
		if err := h.m.Teardown(context.Background(), s); err != nil {
			t.Errorf("Teardown %s: %v", s.TaskID, err)
		}
	})
	path, err := h.m.Setup(context.Background(), s)
	if err != nil {
		t.Fatalf("Setup %s: %v", ip, err)
	}
	return s, path
}

func inNS(t *testing.T, path string, fn func() error) error {
	t.Helper()
	h, err := netns.GetFromPath(path)
	if err != nil {
		t.Fatalf("open netns %s: %v", path, err)
	}
	defer h.Close()
	return doInNetNS(h, fn)
}

// serve starts a TCP server inside the netns at path that answers each connection with the
// client's address as the server sees it.
func serve(t *testing.T, path, addr string) {
	t.Helper()
	var ln net.Listener
	if err := inNS(t, path, func() (err error) {
		ln, err = net.Listen("tcp4", addr)
		return err
	}); err != nil {
		t.Fatalf("listen on %s in %s: %v", addr, path, err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fmt.Fprintf(c, "%s", c.RemoteAddr().(*net.TCPAddr).IP)
			c.Close()
		}
	}()
}

// dial connects from the netns at path to addr and returns what the server said (the client
// address it saw).
func dial(t *testing.T, path, addr string, timeout time.Duration) (string, error) {
	t.Helper()
	var got string
	err := inNS(t, path, func() error {
		c, err := net.DialTimeout("tcp4", addr, timeout)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(timeout))
		b, err := io.ReadAll(c)
		got = string(b)
		return err
	})
	return got, err
}

func mustReach(t *testing.T, from, addr string) string {
	t.Helper()
	got, err := dial(t, from, addr, 3*time.Second)
	if err != nil {
		t.Fatalf("from %s to %s: %v", filepath.Base(from), addr, err)
	}
	return got
}

func mustNotReach(t *testing.T, from, addr string) {
	t.Helper()
	if got, err := dial(t, from, addr, time.Second); err == nil {
		t.Fatalf("from %s to %s: connected (server saw %s), want blocked", filepath.Base(from), addr, got)
	}
}

func nsHandle(t *testing.T, path string) *netlink.Handle {
	t.Helper()
	ns, err := netns.GetFromPath(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

func readSysctl(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func TestSetupConnectivity(t *testing.T) {
	h := newTestHost(t)
	ctx := context.Background()
	rootForward := readSysctl(t, "/proc/sys/net/ipv4/ip_forward")
	br := "orch" + randHex(t, 8)
	if err := h.m.EnsureBridge(ctx, br, "10.77.1.1/24", "10.77.0.0/16"); err != nil {
		t.Fatalf("EnsureBridge: %v", err)
	}
	if got := readSysctl(t, "/proc/sys/net/ipv4/ip_forward"); got != rootForward {
		t.Fatalf("root netns ip_forward changed from %s to %s", rootForward, got)
	}
	var hostForward string
	if err := inNS(t, h.nsPath, func() (err error) {
		b, err := os.ReadFile("/proc/sys/net/ipv4/ip_forward")
		hostForward = strings.TrimSpace(string(b))
		return err
	}); err != nil || hostForward != "1" {
		t.Fatalf("host netns ip_forward = %q (%v), want 1", hostForward, err)
	}

	s1, p1 := h.task(t, br, "10.77.1.10", "10.77.1.1")
	if p1 != filepath.Join(h.netnsDir, s1.NetNS) {
		t.Errorf("Setup returned %s, want %s", p1, filepath.Join(h.netnsDir, s1.NetNS))
	}

	// Inside: eth0 with the MAC and IP, lo up, default route via the gateway.
	th := nsHandle(t, p1)
	eth0, err := th.LinkByName("eth0")
	if err != nil {
		t.Fatalf("eth0 in task netns: %v", err)
	}
	if got := eth0.Attrs().HardwareAddr.String(); got != MACFor(s1.TaskID) {
		t.Errorf("eth0 MAC = %s, want %s", got, MACFor(s1.TaskID))
	}
	if eth0.Attrs().Flags&net.FlagUp == 0 {
		t.Error("eth0 is down")
	}
	addrs, err := th.AddrList(eth0, netlink.FAMILY_V4)
	if err != nil || len(addrs) != 1 || addrs[0].IPNet.String() != "10.77.1.10/24" {
		t.Errorf("eth0 addresses = %v (%v), want exactly 10.77.1.10/24", addrs, err)
	}
	lo, err := th.LinkByName("lo")
	if err != nil || lo.Attrs().Flags&net.FlagUp == 0 {
		t.Errorf("lo not up (%v)", err)
	}
	routes, err := th.RouteList(eth0, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(routes, func(r netlink.Route) bool {
		isDefault := r.Dst == nil || r.Dst.String() == "0.0.0.0/0"
		return isDefault && r.Gw.Equal(net.ParseIP("10.77.1.1"))
	}) {
		t.Errorf("no default route via 10.77.1.1 in %v", routes)
	}

	// Host side: the veth is attached to the bridge and up.
	hh := nsHandle(t, h.nsPath)
	hv, err := hh.LinkByName(HostVethName(s1.TaskID))
	if err != nil {
		t.Fatalf("host veth: %v", err)
	}
	brLink, err := hh.LinkByName(br)
	if err != nil {
		t.Fatal(err)
	}
	if hv.Attrs().MasterIndex != brLink.Attrs().Index || hv.Attrs().Flags&net.FlagUp == 0 {
		t.Errorf("host veth master=%d up=%v, want master %d and up", hv.Attrs().MasterIndex,
			hv.Attrs().Flags&net.FlagUp != 0, brLink.Attrs().Index)
	}

	// The host reaches the task by IP; a second task on the bridge reaches it too. Neither is
	// masqueraded: the task sees the real source address.
	serve(t, p1, "0.0.0.0:8080")
	if got := mustReach(t, h.nsPath, "10.77.1.10:8080"); got != "10.77.1.1" {
		t.Errorf("task saw host as %s, want 10.77.1.1", got)
	}
	_, p2 := h.task(t, br, "10.77.1.11", "10.77.1.1")
	if got := mustReach(t, p2, "10.77.1.10:8080"); got != "10.77.1.11" {
		t.Errorf("task 1 saw task 2 as %s, want 10.77.1.11", got)
	}
	// Containers of one task share the netns: loopback works inside it.
	if got := mustReach(t, p1, "127.0.0.1:8080"); got != "127.0.0.1" {
		t.Errorf("loopback client seen as %s", got)
	}
}

func TestSetupIdempotentTeardown(t *testing.T) {
	h := newTestHost(t)
	ctx := context.Background()
	br := "orch" + randHex(t, 8)
	for range 2 { // EnsureBridge twice: the second adopts
		if err := h.m.EnsureBridge(ctx, br, "10.77.2.1/24", "10.77.0.0/16"); err != nil {
			t.Fatalf("EnsureBridge: %v", err)
		}
	}
	s, path := h.task(t, br, "10.77.2.10", "10.77.2.1")
	hh := nsHandle(t, h.nsPath)
	hostIndex := func() int {
		t.Helper()
		l, err := hh.LinkByName(HostVethName(s.TaskID))
		if err != nil {
			t.Fatalf("host veth: %v", err)
		}
		return l.Attrs().Index
	}
	idx := hostIndex()

	// Setup again adopts: same path, same veth.
	again, err := h.m.Setup(ctx, s)
	if err != nil || again != path {
		t.Fatalf("second Setup = %q, %v; want %q", again, err, path)
	}
	if got := hostIndex(); got != idx {
		t.Errorf("second Setup recreated the veth (index %d -> %d)", idx, got)
	}
	names, err := h.m.List(ctx)
	if err != nil || !slices.Equal(names, []string{s.NetNS}) {
		t.Fatalf("List = %v, %v; want [%s]", names, err, s.NetNS)
	}

	// Repairs: a lost address and route are restored in place; a lost host veth (which takes
	// its peer with it) is recreated.
	th := nsHandle(t, path)
	eth0, err := th.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	addr, _ := netlink.ParseAddr("10.77.2.10/24")
	if err := th.AddrDel(eth0, addr); err != nil {
		t.Fatal(err)
	}
	if _, err := h.m.Setup(ctx, s); err != nil {
		t.Fatalf("Setup after address loss: %v", err)
	}
	if got := hostIndex(); got != idx {
		t.Errorf("repair recreated the veth")
	}
	// A changed MAC in the Spec is applied in place.
	s.MAC = "02:aa:bb:cc:dd:ee"
	if _, err := h.m.Setup(ctx, s); err != nil {
		t.Fatalf("Setup with a new MAC: %v", err)
	}
	if eth0, err = th.LinkByName("eth0"); err != nil || eth0.Attrs().HardwareAddr.String() != s.MAC {
		t.Errorf("eth0 after MAC change: %v, %v; want MAC %s", eth0, err, s.MAC)
	}
	if got := hostIndex(); got != idx {
		t.Errorf("MAC change recreated the veth")
	}
	serve(t, path, "10.77.2.10:8081")
	mustReach(t, h.nsPath, "10.77.2.10:8081")

	if err := hh.LinkDel(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: HostVethName(s.TaskID)}}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.m.Setup(ctx, s); err != nil {
		t.Fatalf("Setup after veth loss: %v", err)
	}
	mustReach(t, h.nsPath, "10.77.2.10:8081") // same netns, so the server is still there

	// Teardown removes everything; twice is fine.
	for i := range 2 {
		if err := h.m.Teardown(ctx, s); err != nil {
			t.Fatalf("Teardown #%d: %v", i+1, err)
		}
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("netns file still there after Teardown (%v)", err)
	}
	if _, err := hh.LinkByName(HostVethName(s.TaskID)); err == nil {
		t.Error("host veth still there after Teardown")
	}
	if names, err := h.m.List(ctx); err != nil || len(names) != 0 {
		t.Errorf("List after Teardown = %v, %v", names, err)
	}

	// A leftover plain file (its mount gone, as after a reboot) is taken over by Setup.
	if err := os.WriteFile(path, nil, 0o444); err != nil {
		t.Fatal(err)
	}
	if _, err := h.m.Setup(ctx, s); err != nil {
		t.Fatalf("Setup over a leftover file: %v", err)
	}
	if ok, err := isNetNS(path); !ok || err != nil {
		t.Errorf("netns not mounted over the leftover file (%v)", err)
	}
	if err := h.m.Teardown(ctx, s); err != nil {
		t.Fatal(err)
	}

	// Setup without the bridge fails clearly.
	s2 := s
	s2.Bridge = "orch" + randHex(t, 8)
	if _, err := h.m.Setup(ctx, s2); !errors.Is(err, ErrBridgeNotFound) {
		t.Errorf("Setup on a missing bridge = %v, want ErrBridgeNotFound", err)
	}
	if err := h.m.Teardown(ctx, s2); err != nil {
		t.Fatal(err)
	}
}

// orchRules returns the comments of the rules in table ip orch of the host netns, or nil if
// the table does not exist.
func orchRules(t *testing.T, h *testHost) []string {
	t.Helper()
	c, err := h.m.nftConn()
	if err != nil {
		t.Fatal(err)
	}
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyIPv4)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(tables, func(tb *nftables.Table) bool { return tb.Name == tableName }) {
		return nil
	}
	rules, err := allRules(c)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range rules {
		out = append(out, ruleComment(r))
	}
	slices.Sort(out)
	return out
}

func TestClusterIsolation(t *testing.T) {
	h := newTestHost(t)
	ctx := context.Background()
	brA, brB := "orch"+randHex(t, 8), "orch"+randHex(t, 8)
	if err := h.m.EnsureBridge(ctx, brA, "10.78.1.1/24", "10.78.0.0/16"); err != nil {
		t.Fatalf("EnsureBridge A: %v", err)
	}
	if err := h.m.EnsureBridge(ctx, brB, "10.79.1.1/24", "10.79.0.0/16"); err != nil {
		t.Fatalf("EnsureBridge B: %v", err)
	}
	wantRules := []string{
		"orch:" + brA + ":isolate", "orch:" + brA + ":masq:10.78.0.0/16",
		"orch:" + brB + ":isolate", "orch:" + brB + ":masq:10.79.0.0/16",
	}
	slices.Sort(wantRules)
	if got := orchRules(t, h); !slices.Equal(got, wantRules) {
		t.Fatalf("rules = %q, want %q", got, wantRules)
	}
	// EnsureBridge again changes nothing.
	if err := h.m.EnsureBridge(ctx, brA, "10.78.1.1/24", "10.78.0.0/16"); err != nil {
		t.Fatal(err)
	}
	if got := orchRules(t, h); !slices.Equal(got, wantRules) {
		t.Fatalf("rules after second EnsureBridge = %q, want %q", got, wantRules)
	}

	_, a1 := h.task(t, brA, "10.78.1.10", "10.78.1.1")
	_, a2 := h.task(t, brA, "10.78.1.11", "10.78.1.1")
	_, b1 := h.task(t, brB, "10.79.1.10", "10.79.1.1")
	for _, p := range []string{a1, a2, b1} {
		serve(t, p, "0.0.0.0:8080")
	}

	// "The world": a namespace behind a non-orch veth of the host, with no route back to the
	// cluster CIDRs, so only masqueraded traffic gets answers.
	out := filepath.Join(filepath.Dir(h.nsPath), "out-"+randHex(t, 8))
	if err := createNetNS(out); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { removeNetNS(out) })
	outNS, err := netns.GetFromPath(out)
	if err != nil {
		t.Fatal(err)
	}
	defer outNS.Close()
	hh, oh := nsHandle(t, h.nsPath), nsHandle(t, out)
	uplink := "xo" + randHex(t, 8)
	if err := hh.LinkAdd(&netlink.Veth{
		LinkAttrs: netlink.LinkAttrs{Name: uplink}, PeerName: "eth0", PeerNamespace: netlink.NsFd(int(outNS)),
	}); err != nil {
		t.Fatal(err)
	}
	for _, x := range []struct {
		h    *netlink.Handle
		name string
		addr string
	}{{hh, uplink, "192.168.200.1/24"}, {oh, "eth0", "192.168.200.2/24"}, {oh, "lo", ""}} {
		l, err := x.h.LinkByName(x.name)
		if err != nil {
			t.Fatal(err)
		}
		if x.addr != "" {
			a, _ := netlink.ParseAddr(x.addr)
			if err := x.h.AddrAdd(l, a); err != nil {
				t.Fatal(err)
			}
		}
		if err := x.h.LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
	}
	serve(t, out, "0.0.0.0:8080")

	if got := mustReach(t, a1, "10.78.1.11:8080"); got != "10.78.1.10" {
		t.Errorf("same-cluster peer saw %s, want 10.78.1.10 (not masqueraded)", got)
	}
	mustReach(t, h.nsPath, "10.79.1.10:8080")
	mustNotReach(t, a1, "10.79.1.10:8080")
	mustNotReach(t, b1, "10.78.1.10:8080")
	if got := mustReach(t, a1, "192.168.200.2:8080"); got != "192.168.200.1" {
		t.Errorf("outside saw task as %s, want the masqueraded 192.168.200.1", got)
	}
	if got := mustReach(t, b1, "192.168.200.2:8080"); got != "192.168.200.1" {
		t.Errorf("outside saw task as %s, want the masqueraded 192.168.200.1", got)
	}
	if out, err := exec.Command("nsenter", "--net="+h.nsPath, "nft", "list", "table", "ip", "orch").CombinedOutput(); err == nil {
		t.Logf("host ruleset:\n%s", out)
	}

	// DeleteBridge removes that bridge's rules only; twice is fine; the last one drops the table.
	for range 2 {
		if err := h.m.DeleteBridge(ctx, brB); err != nil {
			t.Fatalf("DeleteBridge B: %v", err)
		}
	}
	wantA := []string{"orch:" + brA + ":isolate", "orch:" + brA + ":masq:10.78.0.0/16"}
	if got := orchRules(t, h); !slices.Equal(got, wantA) {
		t.Errorf("rules after DeleteBridge B = %q, want %q", got, wantA)
	}
	if _, err := hh.LinkByName(brB); err == nil {
		t.Error("bridge B still exists")
	}
	mustReach(t, a1, "10.78.1.11:8080")
	if err := h.m.DeleteBridge(ctx, brA); err != nil {
		t.Fatalf("DeleteBridge A: %v", err)
	}
	if got := orchRules(t, h); got != nil {
		t.Errorf("table ip orch still exists after the last DeleteBridge: %q", got)
	}
}
