package containerd

import (
	"fmt"

	"github.com/containerd/cgroups/v3/cgroup1/stats"
	statsv2 "github.com/containerd/cgroups/v3/cgroup2/stats"
	"github.com/containerd/containerd/api/types"
	"github.com/containerd/typeurl/v2"

	"orch/agent/runtime"
)

// decodeMetrics turns a task metric (cgroup v1 or v2 stats, whichever the host uses) into
// runtime.Stats. Memory is the working set, usage minus inactive page cache, as docker stats
// and cAdvisor report it; the peak is the raw high-water mark.
func decodeMetrics(m *types.Metric) (runtime.Stats, error) {
	if m == nil || m.Data == nil {
		return runtime.Stats{}, fmt.Errorf("empty metrics")
	}
	v, err := typeurl.UnmarshalAny(m.Data)
	if err != nil {
		return runtime.Stats{}, fmt.Errorf("decode metrics %s: %w", m.Data.GetTypeUrl(), err)
	}
	switch s := v.(type) {
	case *stats.Metrics:
		out := runtime.Stats{
			CPUUsageUsec:    s.GetCPU().GetUsage().GetTotal() / 1000,
			MemoryBytes:     workingSet(s.GetMemory().GetUsage().GetUsage(), s.GetMemory().GetTotalInactiveFile()),
			MemoryPeakBytes: s.GetMemory().GetUsage().GetMax(),
			OOMKills:        s.GetMemoryOomControl().GetOomKill(),
		}
		return out, nil
	case *statsv2.Metrics:
		out := runtime.Stats{
			CPUUsageUsec:    s.GetCPU().GetUsageUsec(),
			MemoryBytes:     workingSet(s.GetMemory().GetUsage(), s.GetMemory().GetInactiveFile()),
			MemoryPeakBytes: s.GetMemory().GetMaxUsage(),
			OOMKills:        s.GetMemoryEvents().GetOomKill(),
		}
		return out, nil
	default:
		return runtime.Stats{}, fmt.Errorf("unknown metrics type %T", v)
	}
}

func workingSet(usage, inactiveFile uint64) uint64 {
	if inactiveFile > usage {
		return 0
	}
	return usage - inactiveFile
}
