package eniname

import (
	"strings"
	"testing"
)

func TestNames(t *testing.T) {
	id := "0123456789abcdef0123456789abcdef"
	tests := []struct{ got, want string }{
		{NetNS(id), "orch-0123456789ab"},
		{HostVeth(id), "ve0123456789ab"},
		{ENI(id), "eni-0123456789abcdef0"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
	if b := Bridge("homelab"); len(b) > 15 || !strings.HasPrefix(b, "orch") || b == Bridge("other") {
		t.Errorf("bridge name %q", b)
	}
	if m := MAC(id); !strings.HasPrefix(m, "02:") || len(m) != 17 || m != MAC(id) {
		t.Errorf("mac %q", m)
	}
}
