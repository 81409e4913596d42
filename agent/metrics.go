package agent

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/types/known/timestamppb"

	"orch/pkg/lifecycle"
	orchv1 "orch/proto/orch/v1"
)

type metrics struct {
	transitions *prometheus.CounterVec
	memory      *prometheus.GaugeVec
	cpu         *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "orch_agent_task_status_reports_total", Help: "Task status changes observed by the agent, by status.",
		}, []string{"status"}),
		memory: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "orch_agent_task_memory_bytes", Help: "Memory used by a task's containers (cgroup).",
		}, []string{"task_id", "cluster"}),
		cpu: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "orch_agent_task_cpu_percent", Help: "CPU used by a task over the last sample, percent of one vCPU.",
		}, []string{"task_id", "cluster"}),
	}
	reg.MustRegister(m.transitions, m.memory, m.cpu)
	return m
}

func (m *metrics) observe(st *orchv1.TaskStatus) {
	m.transitions.WithLabelValues(st.GetLastStatus()).Inc()
}

// Usage implements session.Handler: it samples each running task's containers from their
// cgroups and returns the usage to report.
func (a *Agent) Usage() *orchv1.TaskUsageReport {
	a.mu.Lock()
	type item struct {
		id, cluster string
		containers  []string
	}
	var items []item
	for id, e := range a.tasks {
		if e.status.GetLastStatus() != lifecycle.Running {
			if e.status.GetLastStatus() == lifecycle.Stopped {
				a.m.memory.DeleteLabelValues(id, e.a.GetTask().GetCluster())
				a.m.cpu.DeleteLabelValues(id, e.a.GetTask().GetCluster())
			}
			continue
		}
		it := item{id: id, cluster: e.a.GetTask().GetCluster()}
		for _, c := range e.status.GetContainers() {
			if c.GetLastStatus() == lifecycle.ContainerRunning {
				it.containers = append(it.containers, c.GetRuntimeId())
			}
		}
		items = append(items, it)
	}
	a.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rep := &orchv1.TaskUsageReport{}
	now := time.Now()
	for _, it := range items {
		var cpuUsec, mem, peak uint64
		for _, cid := range it.containers {
			s, err := a.rt.Stats(ctx, cid)
			if err != nil {
				continue
			}
			cpuUsec += s.CPUUsageUsec
			mem += s.MemoryBytes
			peak += s.MemoryPeakBytes
		}
		u := &orchv1.TaskUsage{CpuTotalUsec: int64(cpuUsec), MemoryBytes: int64(mem), MemoryPeakBytes: int64(peak), SampledAt: timestamppb.New(now)}
		a.mu.Lock()
		if prev, ok := a.lastCPU[it.id]; ok && cpuUsec >= prev.usec {
			if wall := now.Sub(prev.at).Microseconds(); wall > 0 {
				u.CpuPercent = float64(cpuUsec-prev.usec) / float64(wall) * 100
			}
		}
		a.lastCPU[it.id] = cpuSample{usec: cpuUsec, at: now}
		a.mu.Unlock()
		a.m.memory.WithLabelValues(it.id, it.cluster).Set(float64(mem))
		a.m.cpu.WithLabelValues(it.id, it.cluster).Set(u.CpuPercent)
		rep.Tasks = append(rep.Tasks, &orchv1.TaskUsageReport_Entry{TaskId: it.id, Usage: u})
	}
	return rep
}
