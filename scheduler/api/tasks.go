package api

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/netip"
	"strconv"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"orch/pkg/arn"
	"orch/pkg/eniname"
	"orch/pkg/lifecycle"
	"orch/pkg/taskdef"
	orchv1 "orch/proto/orch/v1"
	"orch/scheduler/fsm"
	"orch/scheduler/placement"
	"orch/scheduler/state"
)

// NewTaskID returns a random 32-hex task id, as ECS's.
func NewTaskID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b[:])
}

// RunTask implements orchv1.OrchServer: it validates the request here and hands the job to the
// placement pipeline (plan.go), which places its tasks, gives each an ENI address from its
// container instance's subnet, and stores them with the other queued calls' in one Raft entry.
func (s *Server) RunTask(ctx context.Context, req *orchv1.RunTaskRequest) (*orchv1.RunTaskResponse, error) {
	count := int(req.GetCount())
	if count == 0 {
		count = 1
	}
	if count < 1 || count > 10 {
		return nil, invalid("count: %d must be between 1 and 10", req.GetCount())
	}
	if len(req.GetPlacementConstraints()) > 0 || len(req.GetPlacementStrategy()) > 0 {
		return nil, status.Error(codes.Unimplemented, "placementConstraints and placementStrategy are not supported yet; orch binpacks on memory")
	}
	if err := validateTags(req.GetTags()); err != nil {
		return nil, err
	}
	r := s.store.Read()
	cluster, err := activeCluster(r, clusterName(req.GetCluster()))
	if err != nil {
		return nil, err
	}
	td, err := s.resolveTaskDefinition(r, req.GetTaskDefinition())
	if err != nil {
		return nil, err
	}
	if td.GetStatus() != "ACTIVE" {
		return nil, invalid("taskDefinition: %s:%d is INACTIVE", td.GetFamily(), td.GetRevision())
	}
	if err := checkOverrides(td, req.GetOverrides()); err != nil {
		return nil, err
	}
	return s.submit(ctx, newPlanJob(req, cluster, td, taskdef.ApplyOverrides(td, req.GetOverrides()), count))
}

func checkOverrides(td *orchv1.TaskDefinition, ov *orchv1.TaskOverride) error {
	names := map[string]bool{}
	for _, c := range td.GetContainerDefinitions() {
		names[c.GetName()] = true
	}
	for i, co := range ov.GetContainerOverrides() {
		if !names[co.GetName()] {
			return invalid("overrides.containerOverrides[%d].name: %q is not a container of %s:%d", i, co.GetName(), td.GetFamily(), td.GetRevision())
		}
	}
	for _, f := range []struct{ name, v string }{{"cpu", ov.GetCpu()}, {"memory", ov.GetMemory()}} {
		if f.v == "" {
			continue
		}
		if n, err := strconv.Atoi(f.v); err != nil || n <= 0 {
			return invalid("overrides.%s: %q must be a positive integer", f.name, f.v)
		}
	}
	return nil
}

func liveIPs(r *state.ReadTxn, instance string) (map[netip.Addr]bool, error) {
	tasks, err := r.TasksByInstance(instance)
	if err != nil {
		return nil, err
	}
	used := make(map[netip.Addr]bool, len(tasks))
	for _, t := range tasks {
		if t.GetLastStatus() != lifecycle.Stopped || t.GetEniHeld() { // held: its host may still run it
			if ip, err := netip.ParseAddr(t.GetEni().GetIp()); err == nil {
				used[ip] = true
			}
		}
	}
	return used, nil
}

// newTask is one task of job j on container instance ci, with the next address of its subnet.
func (s *Server) newTask(j *planJob, ci *orchv1.ContainerInstance, addrs *placement.Addrs, now *timestamppb.Timestamp) (*orchv1.Task, error) {
	req, c, td, cpu, mem := j.req, j.cluster, j.td, j.want.CPU, j.want.Memory
	ip, err := addrs.Next()
	if err != nil {
		return nil, fmt.Errorf("container instance %s: %w: %w", ci.GetId(), err, state.ErrConflict)
	}
	gw, err := placement.Gateway(ci.GetSubnet())
	if err != nil {
		return nil, err
	}
	id := NewTaskID()
	group := req.GetGroup()
	if group == "" {
		group = "family:" + td.GetFamily()
	}
	t := &orchv1.Task{
		Id:                  id,
		Cluster:             c.GetClusterName(),
		TaskDefinitionArn:   td.GetTaskDefinitionArn(),
		ContainerInstanceId: ci.GetId(),
		HostId:              ci.GetHostId(),
		LastStatus:          lifecycle.Provisioning,
		DesiredStatus:       lifecycle.DesiredRunning,
		Cpu:                 strconv.Itoa(cpu),
		Memory:              strconv.Itoa(mem),
		StartedBy:           req.GetStartedBy(),
		Group:               group,
		CreatedAt:           now,
		LaunchType:          "EC2",
		Connectivity:        "CONNECTED",
		ConnectivityAt:      now,
		Overrides:           req.GetOverrides(),
		Tags:                req.GetTags(),
		Eni: &orchv1.Eni{
			Id:        eniname.ENI(id),
			Ip:        ip.String(),
			PrefixLen: 24,
			Gateway:   gw.String(),
			Mac:       eniname.MAC(id),
			Netns:     eniname.NetNS(id),
			Bridge:    eniname.Bridge(c.GetClusterName()),
			Subnet:    ci.GetSubnet(),
		},
	}
	for _, cd := range j.eff.GetContainerDefinitions() {
		cc := &orchv1.Container{
			Name:       cd.GetName(),
			Image:      cd.GetImage(),
			LastStatus: lifecycle.ContainerPending,
			Cpu:        strconv.Itoa(int(cd.GetCpu())),
			Essential:  taskdef.Essential(cd),
		}
		if cd.Memory != nil {
			cc.Memory = strconv.Itoa(int(cd.GetMemory()))
		}
		if cd.MemoryReservation != nil {
			cc.MemoryReservation = strconv.Itoa(int(cd.GetMemoryReservation()))
		}
		for _, pm := range cd.GetPortMappings() {
			proto := pm.GetProtocol()
			if proto == "" {
				proto = "tcp"
			}
			hp := pm.GetHostPort()
			if hp == 0 {
				hp = pm.GetContainerPort()
			}
			cc.NetworkBindings = append(cc.NetworkBindings, &orchv1.NetworkBinding{
				BindIp: ip.String(), ContainerPort: pm.GetContainerPort(), HostPort: hp, Protocol: proto,
			})
		}
		t.Containers = append(t.Containers, cc)
	}
	return t, nil
}

// taskView is a task as the API shows it: the ENI as an ECS attachment.
func (s *Server) taskView(t *orchv1.Task) *orchv1.Task {
	out := proto.Clone(t).(*orchv1.Task)
	cluster, id := t.GetCluster(), t.GetId()
	out.TaskArn = s.arns.Task(cluster, id)
	out.ClusterArn = s.arns.Cluster(cluster)
	out.ContainerInstanceArn = s.arns.ContainerInstance(cluster, t.GetContainerInstanceId())
	e := t.GetEni()
	for _, c := range out.GetContainers() {
		c.ContainerArn = s.arns.Container(cluster, id, c.GetName())
		c.TaskArn = out.TaskArn
		if e != nil {
			c.NetworkInterfaces = []*orchv1.NetworkInterface{{AttachmentId: e.GetId(), PrivateIpv4Address: e.GetIp()}}
		}
	}
	if e == nil {
		return out
	}
	st := "ATTACHED"
	switch {
	case t.GetLastStatus() == lifecycle.Provisioning:
		st = "PRECREATED"
	case t.GetLastStatus() == lifecycle.Stopped:
		st = "DELETED"
	case lifecycle.Rank(t.GetLastStatus()) >= lifecycle.Rank(lifecycle.Deprovisioning):
		st = "DETACHING"
	}
	out.Attachments = []*orchv1.Attachment{{
		Id: e.GetId(), Type: "ElasticNetworkInterface", Status: st,
		Details: []*orchv1.AttachmentDetail{
			{Name: "subnetId", Value: e.GetSubnet()},
			{Name: "networkInterfaceId", Value: e.GetId()},
			{Name: "macAddress", Value: e.GetMac()},
			{Name: "privateIPv4Address", Value: e.GetIp()},
			{Name: "netns", Value: e.GetNetns()},
		},
	}}
	return out
}

// findTask resolves an id or ARN within a cluster.
func findTask(r *state.ReadTxn, cluster, ref string) (*orchv1.Task, error) {
	id := arn.LastSegment(ref)
	t, err := r.Task(nil, id)
	if err != nil {
		return nil, err
	}
	if t == nil || t.GetCluster() != cluster {
		return nil, nil
	}
	return t, nil
}

// StopTask implements orchv1.OrchServer.
func (s *Server) StopTask(ctx context.Context, req *orchv1.StopTaskRequest) (*orchv1.StopTaskResponse, error) {
	if req.GetTask() == "" {
		return nil, invalid("task: required")
	}
	cluster := clusterName(req.GetCluster())
	t, err := findTask(s.store.Read(), cluster, req.GetTask())
	if err != nil {
		return nil, toStatus(err)
	}
	if t == nil {
		return nil, status.Errorf(codes.NotFound, "task %s: not found in cluster %s", req.GetTask(), cluster)
	}
	reason := req.GetReason()
	if reason == "" {
		reason = "Task stopped by user"
	}
	v, err := s.raft.Apply(ctx, fsm.CmdStopTasks, &orchv1.StopTasksCommand{
		TaskIds: []string{t.GetId()}, StopCode: lifecycle.UserInitiated, Reason: reason, At: timestamppb.New(s.now()),
	})
	if err != nil {
		return nil, toStatus(err)
	}
	return &orchv1.StopTaskResponse{Task: s.taskView(v.([]*orchv1.Task)[0])}, nil
}

// DescribeTasks implements orchv1.OrchServer.
func (s *Server) DescribeTasks(ctx context.Context, req *orchv1.DescribeTasksRequest) (*orchv1.DescribeTasksResponse, error) {
	if len(req.GetTasks()) == 0 {
		return nil, invalid("tasks: at least one task is required")
	}
	if len(req.GetTasks()) > 100 {
		return nil, invalid("tasks: at most 100 tasks per call, got %d", len(req.GetTasks()))
	}
	cluster := clusterName(req.GetCluster())
	r := s.store.Read()
	resp := &orchv1.DescribeTasksResponse{}
	for _, ref := range req.GetTasks() {
		t, err := findTask(r, cluster, ref)
		if err != nil {
			return nil, toStatus(err)
		}
		if t == nil {
			resp.Failures = append(resp.Failures, &orchv1.Failure{Arn: s.arns.Task(cluster, arn.LastSegment(ref)), Reason: "MISSING"})
			continue
		}
		resp.Tasks = append(resp.Tasks, s.taskView(t))
	}
	return resp, nil
}

// ListTasks implements orchv1.OrchServer.
func (s *Server) ListTasks(ctx context.Context, req *orchv1.ListTasksRequest) (*orchv1.ListTasksResponse, error) {
	desired := req.GetDesiredStatus()
	switch desired {
	case "":
		desired = lifecycle.DesiredRunning
	case lifecycle.DesiredRunning, lifecycle.DesiredStopped:
	default:
		return nil, invalid("desiredStatus: %q must be RUNNING or STOPPED", desired)
	}
	r := s.store.Read()
	cluster, err := activeCluster(r, clusterName(req.GetCluster()))
	if err != nil {
		return nil, err
	}
	tasks, err := r.TasksByCluster(cluster.GetClusterName())
	if err != nil {
		return nil, toStatus(err)
	}
	family := req.GetFamily()
	instance := arn.LastSegment(req.GetContainerInstance())
	resp := &orchv1.ListTasksResponse{}
	for _, t := range tasks {
		if t.GetDesiredStatus() != desired {
			continue
		}
		if family != "" && t.GetGroup() != "family:"+family && !hasFamily(t, family) {
			continue
		}
		if instance != "" && t.GetContainerInstanceId() != instance {
			continue
		}
		if req.GetStartedBy() != "" && t.GetStartedBy() != req.GetStartedBy() {
			continue
		}
		if req.GetServiceName() != "" && t.GetGroup() != "service:"+arn.LastSegment(req.GetServiceName()) {
			continue
		}
		resp.TaskArns = append(resp.TaskArns, s.arns.Task(t.GetCluster(), t.GetId()))
	}
	return resp, nil
}

func hasFamily(t *orchv1.Task, family string) bool {
	f, _, err := taskdef.ParseRef(t.GetTaskDefinitionArn())
	return err == nil && f == family
}

// WatchTasks implements orchv1.OrchServer with blocking reads on the store's watch channels.
func (s *Server) WatchTasks(req *orchv1.WatchTasksRequest, stream orchv1.Orch_WatchTasksServer) error {
	if len(req.GetTasks()) == 0 {
		return invalid("tasks: at least one task is required")
	}
	if u := req.GetUntilStatus(); u != "" && !lifecycle.Valid(u) {
		return invalid("untilStatus: %q is not a task status", u)
	}
	cluster := clusterName(req.GetCluster())
	ctx := stream.Context()
	var lastVersion map[string]int32
	for {
		ws := state.NewWatchSet()
		ws.Add(s.store.AbandonCh())
		r := s.store.Read()
		resp := &orchv1.WatchTasksResponse{}
		changed := lastVersion == nil
		done := true
		versions := map[string]int32{}
		for _, ref := range req.GetTasks() {
			t, err := r.Task(ws, arn.LastSegment(ref))
			if err != nil {
				return toStatus(err)
			}
			if t == nil || t.GetCluster() != cluster {
				return status.Errorf(codes.NotFound, "task %s: not found in cluster %s", ref, cluster)
			}
			versions[t.GetId()] = t.GetVersion()
			if lastVersion[t.GetId()] != t.GetVersion() {
				changed = true
			}
			if u := req.GetUntilStatus(); u == "" || (lifecycle.Rank(t.GetLastStatus()) < lifecycle.Rank(u)) {
				done = false
			}
			resp.Tasks = append(resp.Tasks, s.taskView(t))
		}
		if changed {
			if err := stream.Send(resp); err != nil {
				return err
			}
		}
		if done {
			return nil
		}
		lastVersion = versions
		if err := ws.WatchCtx(ctx); err != nil {
			return toStatus(err)
		}
	}
}
