package eni

import (
	"errors"
	"net"
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/userdata"
)

const testTaskID = "0123456789abcdef0123456789abcdef"

func TestNames(t *testing.T) {
	tests := []struct {
		name string
		fn   func(string) string
		in   string
		want string
	}{
		{"netns", NetNSName, testTaskID, "orch-0123456789ab"},
		{"netns short id", NetNSName, "abc", "orch-abc"},
		{"host veth", HostVethName, testTaskID, "ve0123456789ab"},
		{"host veth short id", HostVethName, "abc", "veabc"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.fn(tt.in); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
	if n := len(HostVethName(testTaskID)); n > 15 {
		t.Errorf("host veth name has %d characters, the kernel allows 15", n)
	}
}

func TestMACFor(t *testing.T) {
	ids := []string{testTaskID, "ffffffffffffffffffffffffffffffff", "00000000000000000000000000000000", "x"}
	seen := map[string]string{}
	for _, id := range ids {
		t.Run(id, func(t *testing.T) {
			s := MACFor(id)
			if s != MACFor(id) {
				t.Fatalf("MACFor(%q) is not deterministic", id)
			}
			mac, err := net.ParseMAC(s)
			if err != nil || len(mac) != 6 {
				t.Fatalf("MACFor(%q) = %q: not a 6-byte MAC (%v)", id, s, err)
			}
			if mac[0]&0x02 == 0 {
				t.Errorf("%s is not locally administered", s)
			}
			if mac[0]&0x01 != 0 {
				t.Errorf("%s is multicast", s)
			}
			if !strings.HasPrefix(s, "02:") {
				t.Errorf("%s does not start with 02:", s)
			}
			if other, ok := seen[s]; ok {
				t.Errorf("%q and %q share MAC %s", id, other, s)
			}
			seen[s] = id
		})
	}
}

func TestBridgeName(t *testing.T) {
	clusters := []string{"default", "prod", "a-very-long-cluster-name-that-would-never-fit-in-ifnamsiz", ""}
	seen := map[string]string{}
	for _, c := range clusters {
		t.Run(c, func(t *testing.T) {
			b := BridgeName(c)
			if b != BridgeName(c) {
				t.Fatalf("BridgeName(%q) is not deterministic", c)
			}
			if !strings.HasPrefix(b, BridgePrefix) || len(b) != len(BridgePrefix)+8 || len(b) > 15 {
				t.Errorf("BridgeName(%q) = %q: want %q + 8 hex characters", c, b, BridgePrefix)
			}
			if strings.Trim(b[len(BridgePrefix):], "0123456789abcdef") != "" {
				t.Errorf("BridgeName(%q) = %q: suffix is not hex", c, b)
			}
			if err := validBridge(b); err != nil {
				t.Errorf("validBridge(%q): %v", b, err)
			}
			if other, ok := seen[b]; ok {
				t.Errorf("clusters %q and %q share bridge %s", c, other, b)
			}
			seen[b] = c
		})
	}
}

func TestSpecParse(t *testing.T) {
	good := Spec{TaskID: testTaskID, Bridge: "orch0001", IP: "10.64.3.7", PrefixLen: 24, Gateway: "10.64.3.1"}
	tests := []struct {
		name    string
		mod     func(*Spec)
		wantErr bool
	}{
		{"valid with defaults", func(*Spec) {}, false},
		{"explicit netns and MAC", func(s *Spec) { s.NetNS = "orch-x"; s.MAC = "02:00:00:00:00:01" }, false},
		{"short task id", func(s *Spec) { s.TaskID = "0123" }, true},
		{"non-hex task id", func(s *Spec) { s.TaskID = "0123456789abcdef0123456789abcdeg" }, true},
		{"netns with slash", func(s *Spec) { s.NetNS = "../x" }, true},
		{"bridge without prefix", func(s *Spec) { s.Bridge = "br0" }, true},
		{"bridge too long", func(s *Spec) { s.Bridge = "orch0123456789ab" }, true},
		{"IPv6", func(s *Spec) { s.IP = "fd00::7" }, true},
		{"bad IP", func(s *Spec) { s.IP = "10.64.3" }, true},
		{"prefix 0", func(s *Spec) { s.PrefixLen = 0 }, true},
		{"prefix 33", func(s *Spec) { s.PrefixLen = 33 }, true},
		{"gateway outside subnet", func(s *Spec) { s.Gateway = "10.64.4.1" }, true},
		{"gateway is the task IP", func(s *Spec) { s.Gateway = "10.64.3.7" }, true},
		{"multicast MAC", func(s *Spec) { s.MAC = "01:00:5e:00:00:01" }, true},
		{"bad MAC", func(s *Spec) { s.MAC = "zz" }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := good
			tt.mod(&s)
			p, err := s.parse()
			if tt.wantErr {
				if !errors.Is(err, ErrInvalid) {
					t.Fatalf("parse(%+v) = %v, want ErrInvalid", s, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("parse(%+v): %v", s, err)
			}
			if s.NetNS == "" && p.NetNS != NetNSName(s.TaskID) {
				t.Errorf("default NetNS = %q", p.NetNS)
			}
			if s.MAC == "" && p.mac.String() != MACFor(s.TaskID) {
				t.Errorf("default MAC = %s", p.mac)
			}
		})
	}
}

func TestRuleTags(t *testing.T) {
	_, cidr, _ := net.ParseCIDR("10.64.0.0/16")
	fwd, post := chains()
	tests := []struct {
		name        string
		rule        *nftables.Rule
		wantComment string
		wantBridge  string
	}{
		{"isolate", isolateRule(fwd, "orchaabbccdd"), "orch:orchaabbccdd:isolate", "orchaabbccdd"},
		{"masquerade", masqRule(post, "orch01", cidr), "orch:orch01:masq:10.64.0.0/16", "orch01"},
		{"foreign comment", &nftables.Rule{UserData: userdata.AppendString(nil, userdata.TypeComment, "mine")}, "mine", ""},
		{"no userdata", &nftables.Rule{}, "", ""},
		{"truncated userdata", &nftables.Rule{UserData: []byte{0, 40, 'o'}}, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ruleComment(tt.rule); got != tt.wantComment {
				t.Errorf("comment = %q, want %q", got, tt.wantComment)
			}
			if got := ruleBridge(tt.rule); got != tt.wantBridge {
				t.Errorf("bridge = %q, want %q", got, tt.wantBridge)
			}
		})
	}
}
