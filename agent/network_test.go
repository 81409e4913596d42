package agent

import (
	"context"
	"fmt"
	"testing"

	"orch/agent/eni"
)

// countingNet is a hand-written fake of taskrunner.Network.
type countingNet struct {
	ensures    int
	bridgeGone bool
}

func (c *countingNet) EnsureBridge(ctx context.Context, bridge, gw, cidr string) error {
	c.ensures++
	c.bridgeGone = false
	return nil
}

func (c *countingNet) Setup(ctx context.Context, s eni.Spec) (string, error) {
	if c.bridgeGone {
		return "", fmt.Errorf("bridge %s: %w", s.Bridge, eni.ErrBridgeNotFound)
	}
	return "/run/netns/" + s.NetNS, nil
}

func (c *countingNet) Teardown(ctx context.Context, s eni.Spec) error { return nil }

func TestBridgesEnsuredOnce(t *testing.T) {
	inner := &countingNet{}
	b := newBridges(inner)
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		if err := b.EnsureBridge(ctx, "orchabc", "10.64.0.1/24", "10.64.0.0/24"); err != nil {
			t.Fatal(err)
		}
	}
	if inner.ensures != 1 {
		t.Fatalf("ensured %d times, want once", inner.ensures)
	}
	// Other arguments (a new subnet) are ensured again.
	b.EnsureBridge(ctx, "orchabc", "10.64.1.1/24", "10.64.1.0/24")
	if inner.ensures != 2 {
		t.Fatalf("ensured %d times, want 2", inner.ensures)
	}
	// A bridge deleted behind the agent's back is ensured again by the next Setup.
	inner.bridgeGone = true
	if _, err := b.Setup(ctx, eni.Spec{Bridge: "orchabc", NetNS: "orch-x"}); err != nil {
		t.Fatalf("setup after the bridge vanished: %v", err)
	}
	if inner.ensures != 3 {
		t.Fatalf("ensured %d times, want 3", inner.ensures)
	}
}
