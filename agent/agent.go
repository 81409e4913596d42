// Package agent is orch-agent's composition root: it owns the host's tasks (one taskrunner
// each), the checkpoint, the containerd runtime and the ENI manager, keeps the scheduler
// session, samples usage and serves the node API (logs) and /metrics.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"orch/agent/eni"
	"orch/agent/runtime"
	ctrd "orch/agent/runtime/containerd"
	"orch/agent/session"
	"orch/agent/state"
	"orch/agent/taskrunner"
	"orch/pkg/lifecycle"
	"orch/pkg/pki"
	orchv1 "orch/proto/orch/v1"
)

// Version of the agent.
const Version = "0.1.0"

// Config of an agent. An agent without an identity in DataDir/tls enrolls with JoinToken on
// its first Run: the scheduler picks its host id (the certificate's common name); from then on
// it uses and renews that certificate, and JoinToken is ignored.
type Config struct {
	Endpoints          []string // schedulers' gRPC addresses
	JoinToken          string   // worker join token (ORCH1-W-...): only until DataDir/tls holds an identity
	Clusters           []string // cluster names, or "*" for every cluster
	DataDir            string   // checkpoint, task files, logs
	ContainerdAddress  string
	Namespace          string // containerd namespace, default "orch"
	NetNSDir           string // default /run/netns
	HostNetNS          string // optional: do host-side networking in this netns
	ListenAddr         string // node API (logs), default 127.0.0.1:7403
	AdvertiseAddr      string // what schedulers dial; default ListenAddr
	MetricsAddr        string // /metrics; "" for none
	Hostname           string
	Attributes         map[string]string
	InsecureRegistries []string
	CPU, Memory        int // override detected resources (ECS units, MiB)
	Logger             *slog.Logger
	Registry           prometheus.Registerer // metrics; default a new registry served on MetricsAddr
	LogMaxSize         int64
	LogMaxFiles        int
	StoppedRetention   time.Duration // how long a stopped task's record and logs are kept; default 1h
	HeartbeatInterval  time.Duration
}

// Agent runs the tasks of one host.
type Agent struct {
	cfg   Config
	log   *slog.Logger
	db    *state.DB
	rt    *ctrd.Runtime
	net   *eni.Manager
	tnet  *bridges // what task runners use: net with ensured bridges remembered
	grpc  *grpc.Server
	lis   net.Listener
	httpS *http.Server
	m     *metrics

	ctx context.Context // Run's context: runners live as long as it

	joinToken pki.JoinToken // parsed cfg.JoinToken, when the agent must enroll
	stopRenew context.CancelFunc
	renewWG   sync.WaitGroup

	mu       sync.Mutex
	hostID   string
	id       *identity // nil until enrolled
	tasks    map[string]*entry
	ready    chan struct{}
	saveCh   chan struct{}
	lastCPU  map[string]cpuSample
	runnerWG sync.WaitGroup
}

type entry struct {
	a       *orchv1.Assignment
	runner  *taskrunner.Runner
	status  *orchv1.TaskStatus
	dirty   bool // not yet sent to the scheduler
	unsaved bool // not yet in the checkpoint
}

type cpuSample struct {
	usec uint64
	at   time.Time
}

// New prepares an agent; Run starts it.
func New(cfg Config) (*Agent, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Namespace == "" {
		cfg.Namespace = "orch"
	}
	if cfg.ListenAddr == "" {
		cfg.ListenAddr = "127.0.0.1:7403"
	}
	if cfg.Hostname == "" {
		cfg.Hostname, _ = os.Hostname()
	}
	if cfg.StoppedRetention == 0 {
		cfg.StoppedRetention = time.Hour
	}
	if cfg.LogMaxSize == 0 {
		cfg.LogMaxSize = 10 << 20
	}
	if cfg.LogMaxFiles == 0 {
		cfg.LogMaxFiles = 3
	}
	if len(cfg.Clusters) == 0 {
		cfg.Clusters = []string{"default"}
	}
	if cfg.CPU == 0 {
		cfg.CPU = goruntime.NumCPU() * 1024
	}
	if cfg.Memory == 0 {
		mem, err := totalMemoryMiB()
		if err != nil {
			return nil, err
		}
		cfg.Memory = mem
	}
	a, err := open(cfg)
	if err != nil {
		return nil, err
	}
	a.rt, err = ctrd.New(cfg.ContainerdAddress, ctrd.WithNamespace(cfg.Namespace), ctrd.WithInsecureRegistries(cfg.InsecureRegistries...))
	if err != nil {
		a.Close()
		return nil, fmt.Errorf("containerd at %s: %w", cfg.ContainerdAddress, err)
	}
	netOpts := []eni.Opt{eni.WithLogger(cfg.Logger)}
	if cfg.NetNSDir != "" {
		netOpts = append(netOpts, eni.WithNetNSDir(cfg.NetNSDir))
	}
	if cfg.HostNetNS != "" {
		netOpts = append(netOpts, eni.WithHostNetNS(cfg.HostNetNS))
	}
	if a.net, err = eni.New(netOpts...); err != nil {
		a.Close()
		return nil, err
	}
	a.tnet = newBridges(a.net)
	reg := cfg.Registry
	var gatherer prometheus.Gatherer
	if reg == nil {
		r := prometheus.NewRegistry()
		reg, gatherer = r, r
	}
	a.m = newMetrics(reg)
	if a.lis, err = net.Listen("tcp", cfg.ListenAddr); err != nil {
		a.Close()
		return nil, fmt.Errorf("node API listen %s: %w", cfg.ListenAddr, err)
	}
	if cfg.AdvertiseAddr == "" {
		a.cfg.AdvertiseAddr = a.lis.Addr().String()
	}
	if cfg.MetricsAddr != "" && gatherer != nil {
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{}))
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		hl, err := net.Listen("tcp", cfg.MetricsAddr)
		if err != nil {
			a.Close()
			return nil, fmt.Errorf("metrics listen %s: %w", cfg.MetricsAddr, err)
		}
		a.httpS = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go a.httpS.Serve(hl)
	}
	return a, nil
}

// open is the part of New that needs no system resources: the checkpoint and the identity
// (loaded, or the join token checked).
func open(cfg Config) (*Agent, error) {
	a := &Agent{cfg: cfg, log: cfg.Logger, tasks: map[string]*entry{}, ready: make(chan struct{}, 1), saveCh: make(chan struct{}, 1), lastCPU: map[string]cpuSample{}}
	var err error
	if a.db, err = state.Open(filepath.Join(cfg.DataDir, "agent.db")); err != nil {
		return nil, err
	}
	if a.hostID, err = a.db.HostID(); err != nil {
		a.db.Close()
		return nil, err
	}
	if err := a.prepareIdentity(); err != nil {
		a.Close()
		return nil, err
	}
	return a, nil
}

// Close releases what New opened. Tasks keep running.
func (a *Agent) Close() error {
	a.mu.Lock()
	srv := a.grpc
	a.mu.Unlock()
	if srv != nil {
		srv.Stop()
	}
	if a.lis != nil {
		a.lis.Close()
	}
	a.mu.Lock()
	stopRenew := a.stopRenew
	a.mu.Unlock()
	if stopRenew != nil {
		stopRenew()
		a.renewWG.Wait()
	}
	if a.httpS != nil {
		a.httpS.Close()
	}
	if a.net != nil {
		a.net.Close()
	}
	if a.rt != nil {
		a.rt.Close()
	}
	return a.db.Close()
}

// Run adopts checkpointed tasks, removes orphans, and keeps the scheduler session until ctx
// ends. Running tasks are left running when it returns.
func (a *Agent) Run(ctx context.Context) error {
	a.ctx = ctx
	if err := a.ensureIdentity(ctx); err != nil {
		return err
	}
	srv := a.newNodeServer()
	a.mu.Lock()
	a.grpc = srv
	a.mu.Unlock()
	go srv.Serve(a.lis)
	if err := a.recover(ctx); err != nil {
		return err
	}
	go a.gcLoop(ctx)
	saved := make(chan struct{})
	go func() { defer close(saved); a.saveLoop(ctx) }()
	err := session.Run(ctx, a.sessionConfig())
	a.runnerWG.Wait()
	<-saved
	a.save() // what the runners reported before they returned
	return err
}

// newNodeServer is the node API (logs), which only the cluster's schedulers may call.
func (a *Agent) newNodeServer() *grpc.Server {
	srv := grpc.NewServer(grpc.Creds(a.identity().serverCreds()))
	orchv1.RegisterNodeServiceServer(srv, &nodeService{a: a})
	return srv
}

// sessionConfig is the scheduler session over mutual TLS with the agent's certificate.
func (a *Agent) sessionConfig() session.Config {
	return session.Config{
		Endpoints: a.cfg.Endpoints, Handler: a, Log: a.log, HeartbeatInterval: a.cfg.HeartbeatInterval,
		Credentials: a.identity().clientCreds(),
	}
}

// recover restarts runners for checkpointed tasks (they adopt what containerd runs) and removes
// containers and network namespaces that belong to no task this agent knows.
func (a *Agent) recover(ctx context.Context) error {
	cps, err := a.db.Tasks()
	if err != nil {
		return err
	}
	infos, err := a.rt.List(ctx)
	if err != nil {
		return fmt.Errorf("listing containers: %w", err)
	}
	byTask := map[string]map[string]runtime.ContainerInfo{}
	for _, ci := range infos {
		tid := ci.Labels[runtime.LabelTaskID]
		if byTask[tid] == nil {
			byTask[tid] = map[string]runtime.ContainerInfo{}
		}
		byTask[tid][ci.Labels[runtime.LabelContainer]] = ci
	}
	known := map[string]bool{}
	for _, cp := range cps {
		id := cp.GetAssignment().GetTask().GetId()
		known[id] = true
		e := &entry{a: cp.GetAssignment(), status: cp.GetStatus(), dirty: true}
		a.tasks[id] = e
		if cp.GetStatus().GetLastStatus() != lifecycle.Stopped {
			a.log.Info("adopting task", "task_id", id, "last_status", cp.GetStatus().GetLastStatus(), "containers", len(byTask[id]))
			a.startRunner(e, byTask[id])
		}
	}
	for _, ci := range infos {
		if tid := ci.Labels[runtime.LabelTaskID]; !known[tid] {
			a.log.Warn("removing orphaned container", "container_id", ci.ID, "task_id", tid)
			a.rt.Stop(ctx, ci.ID, time.Second)
			if err := a.rt.Delete(ctx, ci.ID); err != nil {
				a.log.Warn("removing orphaned container", "container_id", ci.ID, "err", err)
			}
		}
	}
	netns, err := a.net.List(ctx)
	if err != nil {
		return fmt.Errorf("listing network namespaces: %w", err)
	}
	for _, name := range netns {
		owned := false
		for id := range known {
			owned = owned || name == eni.NetNSName(id)
		}
		if !owned {
			a.log.Warn("removing orphaned network namespace", "netns", name)
			id := strings.TrimPrefix(name, eni.NetNSPrefix)
			if err := a.net.Teardown(ctx, eni.Spec{TaskID: id, NetNS: name}); err != nil {
				a.log.Warn("removing orphaned network namespace", "netns", name, "err", err)
			}
		}
	}
	return nil
}

func (a *Agent) startRunner(e *entry, existing map[string]runtime.ContainerInfo) {
	id := e.a.GetTask().GetId()
	resolv, err := os.ReadFile("/etc/resolv.conf")
	if err != nil {
		resolv = []byte("nameserver 1.1.1.1\n")
	}
	e.runner = taskrunner.New(taskrunner.Config{
		Runtime: a.rt, Network: a.tnet, Log: a.log, Existing: existing, ResolvConf: resolv,
		TaskDir: filepath.Join(a.cfg.DataDir, "tasks", id),
		LogDir:  a.logDir(id),
		Report:  a.report,
	}, e.a, e.status)
	a.runnerWG.Add(1)
	go func() {
		defer a.runnerWG.Done()
		e.runner.Run(a.ctx)
	}()
}

func (a *Agent) logDir(taskID string) string { return filepath.Join(a.cfg.DataDir, "logs", taskID) }

// report records a runner's status change and queues it for the scheduler and the checkpoint.
// It never waits for the disk: the runner goes on while saveLoop writes every status changed
// since its last write in one transaction. A status lost to a crash in between is not lost
// work: the restarted agent adopts the containers from containerd and reports them again.
// (The assignment itself is saved synchronously, before any container exists.)
func (a *Agent) report(st *orchv1.TaskStatus) {
	a.mu.Lock()
	e := a.tasks[st.GetTaskId()]
	if e == nil {
		a.mu.Unlock()
		return
	}
	e.status = st
	e.dirty = true
	e.unsaved = true
	a.mu.Unlock()
	a.m.observe(st)
	for _, ch := range []chan struct{}{a.ready, a.saveCh} {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// saveLoop writes changed statuses to the checkpoint, batching whatever changed meanwhile.
func (a *Agent) saveLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.saveCh:
			a.save()
		}
	}
}

func (a *Agent) save() {
	a.mu.Lock()
	var batch []*orchv1.AgentCheckpoint
	for _, e := range a.tasks {
		if e.unsaved {
			batch = append(batch, &orchv1.AgentCheckpoint{Assignment: e.a, Status: e.status})
			e.unsaved = false
		}
	}
	a.mu.Unlock()
	if len(batch) == 0 {
		return
	}
	if err := a.db.PutTasks(batch); err != nil {
		a.log.Error("checkpoint", "tasks", len(batch), "err", err)
	}
}

// Registration implements session.Handler.
func (a *Agent) Registration() *orchv1.RegisterHostRequest {
	a.mu.Lock()
	defer a.mu.Unlock()
	attrs := []*orchv1.Attribute{
		{Name: "ecs.os-type", Value: "linux"},
		{Name: "ecs.cpu-architecture", Value: cpuArch()},
		{Name: "orch.hostname", Value: a.cfg.Hostname},
	}
	for k, v := range a.cfg.Attributes {
		attrs = append(attrs, &orchv1.Attribute{Name: k, Value: v})
	}
	return &orchv1.RegisterHostRequest{
		HostId: a.hostID, Hostname: a.cfg.Hostname, Clusters: a.cfg.Clusters, Cpu: int32(a.cfg.CPU),
		Memory: int32(a.cfg.Memory), Attributes: attrs, AgentVersion: Version, Address: a.cfg.AdvertiseAddr,
	}
}

// Registered implements session.Handler. The host id is the certificate's common name,
// fixed at enrollment: a scheduler that registers this host under another id is refused.
func (a *Agent) Registered(resp *orchv1.RegisterHostResponse) error {
	id := resp.GetHost().GetId()
	a.mu.Lock()
	defer a.mu.Unlock()
	if id != a.hostID {
		return fmt.Errorf("scheduler registered this host as %q, but its certificate is for host %q", id, a.hostID)
	}
	return nil
}

// KnownTaskIDs implements session.Handler.
func (a *Agent) KnownTaskIDs() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	ids := make([]string, 0, len(a.tasks))
	for id := range a.tasks {
		ids = append(ids, id)
	}
	return ids
}

// Assign implements session.Handler: state, not commands. New tasks start; known ones get
// their new desired status; tasks the scheduler no longer wants are stopped and cleaned up.
func (a *Agent) Assign(m *orchv1.Assignments) {
	a.mu.Lock()
	defer a.mu.Unlock()
	wanted := map[string]bool{}
	var fresh []*entry
	for _, asg := range m.GetTasks() {
		id := asg.GetTask().GetId()
		wanted[id] = true
		e := a.tasks[id]
		switch {
		case e == nil:
			e = &entry{a: asg}
			a.tasks[id] = e
			fresh = append(fresh, e)
		case e.status.GetLastStatus() == lifecycle.Stopped:
			// Stopped here already: the scheduler has not heard; tell it again.
			e.dirty = true
		default:
			e.a = asg
			e.unsaved = true
			e.runner.Update(asg)
		}
	}
	// New tasks are in the checkpoint before any of their containers exists (one write for all
	// of them), so that a restarted agent knows whatever it may find in containerd.
	if len(fresh) > 0 {
		cps := make([]*orchv1.AgentCheckpoint, len(fresh))
		for i, e := range fresh {
			cps[i] = &orchv1.AgentCheckpoint{Assignment: e.a}
		}
		if err := a.db.PutTasks(cps); err != nil {
			a.log.Error("checkpoint", "tasks", len(cps), "err", err)
		}
		for _, e := range fresh {
			a.startRunner(e, nil)
		}
	}
	unwanted := m.GetRemovedTaskIds()
	if m.GetFull() {
		for id := range a.tasks {
			if !wanted[id] {
				unwanted = append(unwanted, id)
			}
		}
	}
	for _, id := range unwanted {
		e := a.tasks[id]
		if e == nil || e.runner == nil {
			continue
		}
		if e.status.GetLastStatus() == lifecycle.Stopped {
			continue
		}
		a.log.Info("stopping task the scheduler no longer wants", "task_id", id)
		stop := proto.Clone(e.a).(*orchv1.Assignment)
		stop.Task.DesiredStatus = lifecycle.DesiredStopped
		e.a = stop
		e.unsaved = true
		e.runner.Update(stop)
	}
	for _, ch := range []chan struct{}{a.ready, a.saveCh} {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// TakeStatuses implements session.Handler.
func (a *Agent) TakeStatuses(all bool) []*orchv1.TaskStatus {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []*orchv1.TaskStatus
	for _, e := range a.tasks {
		if e.status == nil || !(all || e.dirty) {
			continue
		}
		out = append(out, e.status)
		e.dirty = false
	}
	return out
}

// StatusesReady implements session.Handler.
func (a *Agent) StatusesReady() <-chan struct{} { return a.ready }

// gcLoop forgets stopped tasks (record, runner, logs) after the retention period.
func (a *Agent) gcLoop(ctx context.Context) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		a.mu.Lock()
		var forget []string
		for id, e := range a.tasks {
			st := e.status
			if st.GetLastStatus() == lifecycle.Stopped && !e.dirty && time.Since(st.GetObservedAt().AsTime()) > a.cfg.StoppedRetention {
				forget = append(forget, id)
				delete(a.tasks, id)
			}
		}
		a.mu.Unlock()
		for _, id := range forget {
			if err := a.db.DeleteTask(id); err != nil {
				a.log.Warn("forgetting task", "task_id", id, "err", err)
			}
			os.RemoveAll(a.logDir(id))
		}
	}
}

func cpuArch() string {
	if goruntime.GOARCH == "amd64" {
		return "x86_64"
	}
	return goruntime.GOARCH
}

func totalMemoryMiB() (int, error) {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		var kb int
		if n, _ := fmt.Sscanf(line, "MemTotal: %d kB", &kb); n == 1 {
			return kb / 1024, nil
		}
	}
	return 0, errors.New("MemTotal not found in /proc/meminfo")
}
