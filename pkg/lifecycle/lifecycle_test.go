package lifecycle

import "testing"

func TestForward(t *testing.T) {
	tests := []struct {
		cur, next string
		want      bool
	}{
		{"", Provisioning, true},
		{Provisioning, Pending, true},
		{Pending, Running, true}, // skipping ACTIVATING is still forward
		{Running, Pending, false},
		{Stopped, Running, false},
		{Running, Running, false},
		{Running, "BOGUS", false},
		{Deprovisioning, Stopped, true},
	}
	for _, tt := range tests {
		if got := Forward(tt.cur, tt.next); got != tt.want {
			t.Errorf("Forward(%q, %q) = %v, want %v", tt.cur, tt.next, got, tt.want)
		}
	}
	if !ContainerForward(ContainerPending, ContainerStopped) || ContainerForward(ContainerStopped, ContainerRunning) {
		t.Error("container statuses must only move forward")
	}
}
