// Package gctune sets the Go garbage collector's target from the live heap, for the scheduler.
//
// The scheduler's state lives in memory: at 100,000 tasks the live heap is some hundreds of MiB
// of small objects (tasks and the radix trees that index them), and with Go's default
// (GOGC=100: collect when the heap has grown by the live heap) a third of the CPU of a busy
// scheduler went to the collector. A small scheduler keeps the default, so that an idle or
// homelab control plane stays small; once the live heap passes Threshold the collector may let
// the heap grow by up to Headroom before it runs (at least by the live heap, as by default, and
// at most by four times it). Setting GOGC in the environment turns the tuning off.
package gctune

import (
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync/atomic"
)

// Defaults of Config.
const (
	DefaultThreshold = 64 << 20 // live heap below which Go's default applies
	DefaultHeadroom  = 1 << 30  // growth allowed above it
	maxPercent       = 400
)

// Config tunes the policy; zero fields take the defaults.
type Config struct {
	Threshold uint64
	Headroom  uint64
}

// Percent is the GOGC for a live heap of live bytes.
func (c Config) Percent(live uint64) int {
	if c.Threshold == 0 {
		c.Threshold = DefaultThreshold
	}
	if c.Headroom == 0 {
		c.Headroom = DefaultHeadroom
	}
	if live < c.Threshold {
		return 100
	}
	return int(min(max(c.Headroom*100/live, 100), maxPercent))
}

// Start tunes the collector after every collection from now on, unless GOGC is set; stop ends
// it (and leaves the last target in place).
func Start(c Config) (stop func()) {
	var stopped atomic.Bool
	if _, set := os.LookupEnv("GOGC"); set {
		return func() {}
	}
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	var rearm func()
	rearm = func() {
		// A finalizer runs once, after the collection that found its object unreachable: a new
		// sentinel each time hears about the next one.
		runtime.SetFinalizer(new([16]byte), func(*[16]byte) {
			if stopped.Load() {
				return
			}
			metrics.Read(sample)
			if sample[0].Value.Kind() == metrics.KindUint64 {
				debug.SetGCPercent(c.Percent(sample[0].Value.Uint64()))
			}
			rearm()
		})
	}
	rearm()
	return func() { stopped.Store(true) }
}
