package agent

import (
	"context"
	"errors"
	"sync"

	"orch/agent/eni"
	"orch/agent/taskrunner"
)

// bridges remembers which cluster bridges this agent process has ensured, so that a task start
// does not redo the bridge, forwarding and nftables checks every time (they are idempotent but
// cost several milliseconds). A task's Setup that finds its bridge gone (someone deleted it)
// ensures it again and retries once.
type bridges struct {
	taskrunner.Network
	mu   sync.Mutex
	done map[string][3]string // bridge -> the arguments it was ensured with
}

func newBridges(n taskrunner.Network) *bridges {
	return &bridges{Network: n, done: map[string][3]string{}}
}

func (b *bridges) EnsureBridge(ctx context.Context, bridge, gatewayCIDR, clusterCIDR string) error {
	args := [3]string{bridge, gatewayCIDR, clusterCIDR}
	b.mu.Lock()
	ok := b.done[bridge] == args
	b.mu.Unlock()
	if ok {
		return nil
	}
	if err := b.Network.EnsureBridge(ctx, bridge, gatewayCIDR, clusterCIDR); err != nil {
		return err
	}
	b.mu.Lock()
	b.done[bridge] = args
	b.mu.Unlock()
	return nil
}

func (b *bridges) Setup(ctx context.Context, s eni.Spec) (string, error) {
	path, err := b.Network.Setup(ctx, s)
	if !errors.Is(err, eni.ErrBridgeNotFound) {
		return path, err
	}
	b.mu.Lock()
	args, ok := b.done[s.Bridge]
	delete(b.done, s.Bridge)
	b.mu.Unlock()
	if !ok {
		return path, err
	}
	if err := b.EnsureBridge(ctx, args[0], args[1], args[2]); err != nil {
		return "", err
	}
	return b.Network.Setup(ctx, s)
}
