package bench

import (
	"testing"
	"time"
)

func TestSummarize(t *testing.T) {
	ms := func(vs ...int) []time.Duration {
		out := make([]time.Duration, len(vs))
		for i, v := range vs {
			out[i] = time.Duration(v) * time.Millisecond
		}
		return out
	}
	twenty := ms(20, 19, 18, 17, 16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1)
	tests := []struct {
		name                       string
		in                         []time.Duration
		median, p95, min, max, avg time.Duration
	}{
		{"empty", nil, 0, 0, 0, 0, 0},
		{"one", ms(7), 7 * time.Millisecond, 7 * time.Millisecond, 7 * time.Millisecond, 7 * time.Millisecond, 7 * time.Millisecond},
		{"odd", ms(30, 10, 20), 20 * time.Millisecond, 30 * time.Millisecond, 10 * time.Millisecond, 30 * time.Millisecond, 20 * time.Millisecond},
		{"even", ms(40, 10, 20, 30), 25 * time.Millisecond, 40 * time.Millisecond, 10 * time.Millisecond, 40 * time.Millisecond, 25 * time.Millisecond},
		// Nearest rank: ceil(0.95*20) = 19th smallest.
		{"twenty", twenty, 10500 * time.Microsecond, 19 * time.Millisecond, time.Millisecond, 20 * time.Millisecond, 10500 * time.Microsecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := Summarize(tt.in)
			if s.N != len(tt.in) || s.Median != tt.median || s.P95 != tt.p95 || s.Min != tt.min || s.Max != tt.max || s.Mean != tt.avg {
				t.Errorf("Summarize = N %d median %s p95 %s min %s max %s mean %s; want median %s p95 %s min %s max %s mean %s",
					s.N, s.Median, s.P95, s.Min, s.Max, s.Mean, tt.median, tt.p95, tt.min, tt.max, tt.avg)
			}
			for i := range tt.in {
				if s.Samples[i] != tt.in[i] {
					t.Fatalf("Samples reordered: %v, want %v", s.Samples, tt.in)
				}
			}
		})
	}
}
