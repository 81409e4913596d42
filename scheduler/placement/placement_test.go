package placement

import (
	"net/netip"
	"strconv"
	"strings"
	"testing"
)

func nodes() []*Node {
	return []*Node{
		{ID: "a", HostID: "h1", Status: "ACTIVE", Connected: true, CPU: 2048, Memory: 1024, FreeIPs: 250},
		{ID: "b", HostID: "h2", Status: "ACTIVE", Connected: true, CPU: 2048, Memory: 4096, UsedMem: 1024, FreeIPs: 250},
		{ID: "c", HostID: "h3", Status: "DRAINING", Connected: true, CPU: 4096, Memory: 8192, FreeIPs: 250},
		{ID: "d", HostID: "h4", Status: "ACTIVE", Connected: false, CPU: 4096, Memory: 8192, FreeIPs: 250},
	}
}

func TestPlace(t *testing.T) {
	tests := []struct {
		name       string
		req        Request
		count      int
		wantPicks  string
		wantReason string
		wantDetail string
	}{
		{name: "binpack memory picks least remaining", req: Request{CPU: 256, Memory: 512}, count: 1, wantPicks: "a"},
		{name: "binpack accounts each pick", req: Request{CPU: 256, Memory: 512}, count: 3, wantPicks: "a,a,b"},
		{name: "too big everywhere", req: Request{Memory: 100000}, count: 1, wantReason: ReasonMemory,
			wantDetail: "0 of 4 container instances fit: insufficient memory 2, agent disconnected 1, not ACTIVE 1"},
		{name: "cpu", req: Request{CPU: 3000, Memory: 10}, count: 1, wantReason: ReasonCPU},
		{name: "partial", req: Request{Memory: 2000}, count: 3, wantPicks: "b", wantReason: ReasonMemory},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			picks, fails := Place(nodes(), tt.req, tt.count)
			var ids []string
			for _, p := range picks {
				ids = append(ids, p.ID)
			}
			if got := strings.Join(ids, ","); got != tt.wantPicks {
				t.Errorf("picks = %q, want %q", got, tt.wantPicks)
			}
			if len(picks)+len(fails) != tt.count {
				t.Errorf("%d picks + %d failures != %d", len(picks), len(fails), tt.count)
			}
			if tt.wantReason != "" && (len(fails) == 0 || fails[0].Reason != tt.wantReason) {
				t.Errorf("failures = %+v, want reason %s", fails, tt.wantReason)
			}
			if tt.wantDetail != "" && fails[0].Detail != tt.wantDetail {
				t.Errorf("detail = %q, want %q", fails[0].Detail, tt.wantDetail)
			}
		})
	}
}

func TestPorts(t *testing.T) {
	ns := []*Node{{ID: "a", HostID: "h", Status: "ACTIVE", Connected: true, CPU: 1024, Memory: 1024, FreeIPs: 250}}
	picks, fails := Place(ns, Request{Memory: 10, TCP: []int32{80}}, 2)
	if len(picks) != 1 || len(fails) != 1 || fails[0].Reason != ReasonPorts {
		t.Fatalf("picks %d, failures %+v; want 1 pick and RESOURCE:PORTS", len(picks), fails)
	}
}

func TestAddresses(t *testing.T) {
	// A full subnet sends the next task to another instance; with none left it fails.
	ns := []*Node{
		{ID: "a", HostID: "h1", Status: "ACTIVE", Connected: true, CPU: 4096, Memory: 4096, FreeIPs: 1},
		{ID: "b", HostID: "h2", Status: "ACTIVE", Connected: true, CPU: 4096, Memory: 8192, FreeIPs: 1},
	}
	picks, fails := Place(ns, Request{Memory: 10}, 3)
	if len(picks) != 2 || picks[0].ID == picks[1].ID || len(fails) != 1 || fails[0].Reason != ReasonENI {
		t.Fatalf("picks %v, failures %+v", picks, fails)
	}
}

func TestSharedHost(t *testing.T) {
	// Two container instances (two clusters) on one host share its memory.
	ns := []*Node{
		{ID: "a", HostID: "h", Status: "ACTIVE", Connected: true, CPU: 1024, Memory: 1000, FreeIPs: 250},
		{ID: "b", HostID: "h", Status: "ACTIVE", Connected: true, CPU: 1024, Memory: 1000, FreeIPs: 250},
	}
	picks, _ := Place(ns, Request{Memory: 600}, 1)
	if len(picks) != 1 || ns[1].UsedMem != 600 {
		t.Fatalf("the sibling instance must be charged too: %+v", ns[1])
	}
}

func TestIPAM(t *testing.T) {
	used := map[netip.Addr]bool{netip.MustParseAddr("10.64.3.2"): true}
	if ip, err := (&Addrs{Subnet: "10.64.3.0/24", Used: used}).Next(); err != nil || ip.String() != "10.64.3.3" {
		t.Fatalf("Next = %v, %v", ip, err)
	}
	used = map[netip.Addr]bool{}
	for i := 2; i < 255; i++ {
		used[netip.MustParseAddr("10.64.3."+itoa(i))] = true
	}
	if _, err := (&Addrs{Subnet: "10.64.3.0/24", Used: used}).Next(); err == nil {
		t.Fatal("a full subnet must fail")
	}
	// One after the other: always the lowest free address, skipping the taken ones.
	addrs := &Addrs{Subnet: "10.64.3.0/24", Used: map[netip.Addr]bool{
		netip.MustParseAddr("10.64.3.3"): true, netip.MustParseAddr("10.64.3.5"): true,
	}}
	for _, want := range []string{"10.64.3.2", "10.64.3.4", "10.64.3.6", "10.64.3.7"} {
		if ip, err := addrs.Next(); err != nil || ip.String() != want {
			t.Fatalf("Next = %v, %v; want %s", ip, err, want)
		}
	}
	full := &Addrs{Subnet: "10.64.3.0/24", Used: map[netip.Addr]bool{}}
	for range 253 {
		if _, err := full.Next(); err != nil {
			t.Fatal(err)
		}
	}
	if ip, err := full.Next(); err == nil {
		t.Fatalf("the 254th address of a /24: %v, want an error", ip)
	}
	gw, _ := Gateway("10.64.3.0/24")
	if gw.String() != "10.64.3.1" {
		t.Fatalf("gateway %s", gw)
	}
	s, err := SubnetFor("10.64.0.0/16", 5)
	if err != nil || s != "10.64.5.0/24" {
		t.Fatalf("SubnetFor = %q, %v", s, err)
	}
	if _, err := SubnetFor("10.64.0.0/16", 256); err == nil {
		t.Fatal("out of range must fail")
	}
	if SubnetSize("10.64.3.0/24") != 253 || SubnetSize("bogus") != 0 {
		t.Fatal("SubnetSize")
	}
	if !Overlaps("10.64.0.0/16", "10.64.3.0/24") || Overlaps("10.64.0.0/16", "10.65.0.0/16") {
		t.Fatal("Overlaps")
	}
}

func itoa(i int) string { return strconv.Itoa(i) }
