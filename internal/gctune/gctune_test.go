package gctune

import (
	"os"
	"runtime"
	"runtime/debug"
	"testing"
	"time"
)

func TestPercent(t *testing.T) {
	const mib = 1 << 20
	tests := []struct {
		name string
		cfg  Config
		live uint64
		want int
	}{
		{"idle scheduler keeps the default", Config{}, 8 * mib, 100},
		{"just below the threshold", Config{}, 64*mib - 1, 100},
		{"at the threshold: at most 4x", Config{}, 64 * mib, 400},
		{"256 MiB live: 1 GiB headroom is 4x", Config{}, 256 * mib, 400},
		{"512 MiB live: 1 GiB headroom is 2x", Config{}, 512 * mib, 200},
		{"1 GiB live: the default", Config{}, 1024 * mib, 100},
		{"4 GiB live: never below the default", Config{}, 4096 * mib, 100},
		{"own threshold and headroom", Config{Threshold: mib, Headroom: 3 * mib}, 2 * mib, 150},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.cfg.Percent(tt.live); got != tt.want {
				t.Fatalf("Percent(%d MiB) = %d, want %d", tt.live/mib, got, tt.want)
			}
		})
	}
}

// After a collection with a live heap above the threshold, the target is raised; Start leaves
// it alone when GOGC is set.
func TestStart(t *testing.T) {
	if _, set := os.LookupEnv("GOGC"); set {
		t.Skip("GOGC is set: Start does not tune")
	}
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	stop := Start(Config{Threshold: 1 << 20, Headroom: 1 << 40})
	defer stop()
	keep := make([]*[1024]byte, 4096) // 4 MiB live, above the 1 MiB threshold
	for i := range keep {
		keep[i] = new([1024]byte)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		runtime.GC()
		time.Sleep(10 * time.Millisecond) // the finalizer runs after the collection
		if got := debug.SetGCPercent(maxPercent); got == maxPercent {
			break
		} else {
			debug.SetGCPercent(got)
		}
		if time.Now().After(deadline) {
			t.Fatal("GOGC was not raised after collections with a large live heap")
		}
	}
	runtime.KeepAlive(keep)
}
