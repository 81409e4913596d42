package bench

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strings"
	"time"
)

// Stats summarises the samples of one measurement.
type Stats struct {
	N       int
	Median  time.Duration // mean of the two middle samples when N is even
	P95     time.Duration // nearest rank: the ceil(0.95*N)-th smallest sample
	Min     time.Duration
	Max     time.Duration
	Mean    time.Duration
	Samples []time.Duration // in the order measured
}

// Summarize computes Stats of samples (which it does not reorder). No samples give zero Stats.
func Summarize(samples []time.Duration) Stats {
	s := Stats{N: len(samples), Samples: slices.Clone(samples)}
	if len(samples) == 0 {
		return s
	}
	sorted := slices.Clone(samples)
	slices.Sort(sorted)
	n := len(sorted)
	if n%2 == 1 {
		s.Median = sorted[n/2]
	} else {
		s.Median = (sorted[n/2-1] + sorted[n/2]) / 2
	}
	rank := int(math.Ceil(0.95 * float64(n)))
	s.P95 = sorted[max(rank, 1)-1]
	s.Min, s.Max = sorted[0], sorted[n-1]
	var sum time.Duration
	for _, d := range sorted {
		sum += d
	}
	s.Mean = sum / time.Duration(n)
	return s
}

// Ratio is orch's figure divided by the floor's, per statistic.
type Ratio struct {
	Median, P95, Min, Max float64
}

func ratio(a, b time.Duration) float64 {
	if b <= 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// Result is what one benchmark run measured.
type Result struct {
	Start   time.Time
	N       int
	Image   string       // the image both sides start, in the private registry
	Orch    Stats        // RunTask call -> WatchTasks reports RUNNING
	Floor   Stats        // netns + veth + container create + task create + task start
	Ratio   Ratio        // Orch / Floor
	Machine Machine      // where it ran
	Extra   *ExtraResult // the figures enabled by Config.Burst, Bulk, Phases, Footprint
	// HA and Sched are the control-plane and scheduling figures (RunHA, RunSched), if measured.
	HA    *HAResult
	Sched *SchedResult
}

// NewResult is a Result without the start figures (N 0), for runs of RunHA or RunSched alone.
func NewResult() *Result {
	return &Result{Start: time.Now().UTC().Truncate(time.Second), Machine: machine()}
}

// Machine describes the host the figures were measured on.
type Machine struct {
	Hostname   string `json:"hostname"`
	Kernel     string `json:"kernel"`
	CPUs       int    `json:"cpus"`
	GoVersion  string `json:"goVersion"`
	Containerd string `json:"containerd"`
}

func newRatio(o, f Stats) Ratio {
	return Ratio{
		Median: ratio(o.Median, f.Median), P95: ratio(o.P95, f.P95),
		Min: ratio(o.Min, f.Min), Max: ratio(o.Max, f.Max),
	}
}

// Labels of the table rows, also used in the JSON.
const (
	orchLabel  = "orch: run-task -> RUNNING"
	floorLabel = "floor: netns+veth+create+start"
)

// WriteTable prints the result as a table: one row per side, then the ratio.
func (r *Result) WriteTable(w io.Writer) error {
	var b strings.Builder
	if r.N == 0 {
		fmt.Fprintf(&b, "orch-bench %s: %d CPUs, kernel %s\n", r.Start.Format(time.RFC3339), r.Machine.CPUs, r.Machine.Kernel)
		r.writeControlPlane(&b)
		_, err := io.WriteString(w, b.String())
		return err
	}
	fmt.Fprintf(&b, "orch-bench %s: n=%d per side, image %s, containerd %s, %d CPUs, kernel %s\n",
		r.Start.Format(time.RFC3339), r.N, r.Image, r.Machine.Containerd, r.Machine.CPUs, r.Machine.Kernel)
	const row = "%-32s %10s %10s %10s %10s %10s\n"
	fmt.Fprintf(&b, row, "", "median", "p95", "min", "max", "mean")
	for _, side := range []struct {
		label string
		s     Stats
	}{{orchLabel, r.Orch}, {floorLabel, r.Floor}} {
		s := side.s
		fmt.Fprintf(&b, row, side.label, ms(s.Median), ms(s.P95), ms(s.Min), ms(s.Max), ms(s.Mean))
	}
	x := func(f float64) string { return fmt.Sprintf("%.2fx", f) }
	fmt.Fprintf(&b, row, "ratio orch/floor", x(r.Ratio.Median), x(r.Ratio.P95), x(r.Ratio.Min), x(r.Ratio.Max), "")
	if r.Extra != nil {
		r.Extra.writeTable(&b)
	}
	r.writeControlPlane(&b)
	_, err := io.WriteString(w, b.String())
	return err
}

// writeControlPlane prints the figures of RunHA and RunSched, if measured.
func (r *Result) writeControlPlane(b *strings.Builder) {
	if r.HA != nil {
		b.WriteString("\n")
		r.HA.writeTable(b)
	}
	if r.Sched != nil {
		r.Sched.writeTable(b)
	}
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", msf(d)) }

func msf(d time.Duration) float64 { return math.Round(float64(d)/float64(time.Microsecond)) / 1000 }

// jsonStats is Stats in milliseconds.
type jsonStats struct {
	What      string    `json:"what"`
	N         int       `json:"n"`
	MedianMs  float64   `json:"medianMs"`
	P95Ms     float64   `json:"p95Ms"`
	MinMs     float64   `json:"minMs"`
	MaxMs     float64   `json:"maxMs"`
	MeanMs    float64   `json:"meanMs"`
	SamplesMs []float64 `json:"samplesMs,omitempty"`
}

func toJSONStats(what string, s Stats) jsonStats {
	j := jsonStats{What: what, N: s.N, MedianMs: msf(s.Median), P95Ms: msf(s.P95), MinMs: msf(s.Min),
		MaxMs: msf(s.Max), MeanMs: msf(s.Mean), SamplesMs: make([]float64, len(s.Samples))}
	for i, d := range s.Samples {
		j.SamplesMs[i] = msf(d)
	}
	return j
}

type jsonRatio struct {
	Median float64 `json:"median"`
	P95    float64 `json:"p95"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
}

type jsonResult struct {
	Start   time.Time    `json:"start"`
	N       int          `json:"n"`
	Image   string       `json:"image,omitempty"`
	Machine Machine      `json:"machine"`
	Orch    *jsonStats   `json:"orch,omitempty"`  // nil without the start figures (N 0)
	Floor   *jsonStats   `json:"floor,omitempty"` // nil without the start figures
	Ratio   *jsonRatio   `json:"ratioOrchToFloor,omitempty"`
	Extra   *ExtraResult `json:"extra,omitempty"`
	HA      *HAResult    `json:"ha,omitempty"`
	Sched   *SchedResult `json:"sched,omitempty"`
}

// MarshalJSON writes durations in milliseconds with microsecond precision.
func (r *Result) MarshalJSON() ([]byte, error) {
	j := jsonResult{Start: r.Start, N: r.N, Image: r.Image, Machine: r.Machine, Extra: r.Extra, HA: r.HA, Sched: r.Sched}
	if r.N > 0 {
		o, f := toJSONStats(orchLabel, r.Orch), toJSONStats(floorLabel, r.Floor)
		round := func(f float64) float64 { return math.Round(f*1000) / 1000 }
		j.Orch, j.Floor = &o, &f
		j.Ratio = &jsonRatio{Median: round(r.Ratio.Median), P95: round(r.Ratio.P95), Min: round(r.Ratio.Min), Max: round(r.Ratio.Max)}
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // "->" in the labels
	if err := enc.Encode(j); err != nil {
		return nil, err
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), nil
}

// WriteJSON writes the result as indented JSON to path.
func (r *Result) WriteJSON(path string) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // "->" in the labels
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return fmt.Errorf("encode result: %w", err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
