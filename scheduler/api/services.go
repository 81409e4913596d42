package api

// Services, as ECS's REPLICA scheduler. The handlers validate and write the service through
// Raft (fsm.CmdPutServices), each write a compare-and-set on the modify index the handler read;
// the service controller (controllers.Services) drives the tasks toward the PRIMARY deployment
// and writes counts, events and rollout states the same way. When the two race, the loser's
// command changes nothing and it reads again, so neither overwrites the other.

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"math/big"
	"regexp"
	"sort"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"orch/pkg/arn"
	orchv1 "orch/proto/orch/v1"
	"orch/scheduler/fsm"
	"orch/scheduler/state"
)

// Service and deployment vocabulary (ECS's).
const (
	serviceActive     = "ACTIVE"
	serviceDraining   = "DRAINING"
	serviceInactive   = "INACTIVE"
	deploymentPrimary = "PRIMARY"
	deploymentActive  = "ACTIVE"
	rolloutInProgress = "IN_PROGRESS"

	defaultMaximumPercent        = 200
	defaultMinimumHealthyPercent = 100
	// maxServiceWrites bounds the compare-and-set retries of one call: each retry means the
	// controller wrote the service in between, which it does at most a few times a second.
	maxServiceWrites = 20
	// maxDescribeServices is ECS's limit per DescribeServices call.
	maxDescribeServices = 10
)

// clientTokenPattern is ECS's: up to 36 ASCII characters from 33 to 126.
var clientTokenPattern = regexp.MustCompile(`^[\x21-\x7e]{1,36}$`)

// NewDeploymentID returns an ECS deployment id: "ecs-svc/" and 19 random digits. It is the
// startedBy of the deployment's tasks.
func NewDeploymentID() string {
	n, err := rand.Int(rand.Reader, big.NewInt(9e18))
	if err != nil {
		panic(err)
	}
	return "ecs-svc/" + n.Add(n, big.NewInt(1e18)).String() // 1e18 <= n < 1e19: 19 digits
}

func newDeployment(taskDefinition string, desired int32, launchType string, now *timestamppb.Timestamp) *orchv1.Deployment {
	id := NewDeploymentID()
	return &orchv1.Deployment{
		Id: id, Status: deploymentPrimary, TaskDefinition: taskDefinition, DesiredCount: desired,
		CreatedAt: now, UpdatedAt: now, LaunchType: launchType,
		RolloutState: rolloutInProgress, RolloutStateReason: "ECS deployment " + id + " in progress.",
	}
}

// deploymentConfiguration merges req over cur (nil: ECS's defaults) and checks the result,
// naming the field at fault.
func deploymentConfiguration(cur, req *orchv1.DeploymentConfiguration) (*orchv1.DeploymentConfiguration, error) {
	out := &orchv1.DeploymentConfiguration{
		MaximumPercent:           proto.Int32(defaultMaximumPercent),
		MinimumHealthyPercent:    proto.Int32(defaultMinimumHealthyPercent),
		DeploymentCircuitBreaker: &orchv1.DeploymentCircuitBreaker{},
	}
	for _, dc := range []*orchv1.DeploymentConfiguration{cur, req} {
		if dc == nil {
			continue
		}
		if dc.MaximumPercent != nil {
			out.MaximumPercent = proto.Int32(dc.GetMaximumPercent())
		}
		if dc.MinimumHealthyPercent != nil {
			out.MinimumHealthyPercent = proto.Int32(dc.GetMinimumHealthyPercent())
		}
		if cb := dc.GetDeploymentCircuitBreaker(); cb != nil {
			out.DeploymentCircuitBreaker = proto.Clone(cb).(*orchv1.DeploymentCircuitBreaker)
		}
	}
	maxPct, minPct := out.GetMaximumPercent(), out.GetMinimumHealthyPercent()
	if maxPct < 100 || maxPct > 200 {
		return nil, invalid("deploymentConfiguration.maximumPercent: %d must be between 100 and 200", maxPct)
	}
	if minPct < 0 || minPct > 100 {
		return nil, invalid("deploymentConfiguration.minimumHealthyPercent: %d must be between 0 and 100", minPct)
	}
	if minPct == 100 && maxPct == 100 {
		return nil, invalid("deploymentConfiguration.maximumPercent: 100 with minimumHealthyPercent 100 leaves no room to replace a task; raise maximumPercent or lower minimumHealthyPercent")
	}
	if cb := out.GetDeploymentCircuitBreaker(); cb.GetRollback() && !cb.GetEnable() {
		return nil, invalid("deploymentConfiguration.deploymentCircuitBreaker.rollback: requires enable")
	}
	return out, nil
}

// serviceName returns the name from a service name or ARN (service/<cluster>/<name>).
func serviceName(ref string) string { return arn.LastSegment(ref) }

func serviceNotFound(cluster, ref string) error {
	return status.Errorf(codes.NotFound, "service %s: Service not found. (cluster %s)", ref, cluster)
}

func serviceNotActive(svc *orchv1.Service) error {
	return status.Errorf(codes.FailedPrecondition, "service %s: Service was not ACTIVE. (it is %s)", svc.GetServiceName(), svc.GetStatus())
}

// CreateService implements orchv1.OrchServer. A request identical to the one that created an
// existing ACTIVE service returns that service (ECS's idempotency); any other request for a
// name in use fails.
func (s *Server) CreateService(ctx context.Context, req *orchv1.CreateServiceRequest) (*orchv1.CreateServiceResponse, error) {
	name := req.GetServiceName()
	if !namePattern.MatchString(name) {
		return nil, invalid("serviceName: %q must be 1-255 letters, digits, hyphens or underscores", name)
	}
	switch req.GetSchedulingStrategy() {
	case "", "REPLICA":
	case "DAEMON":
		return nil, status.Error(codes.Unimplemented, "schedulingStrategy: DAEMON is not supported yet; use REPLICA")
	default:
		return nil, invalid("schedulingStrategy: %q must be REPLICA or DAEMON", req.GetSchedulingStrategy())
	}
	if req.DesiredCount == nil {
		return nil, invalid("desiredCount: required for the REPLICA scheduling strategy")
	}
	if req.GetDesiredCount() < 0 {
		return nil, invalid("desiredCount: %d must be 0 or more", req.GetDesiredCount())
	}
	launchType, err := checkLaunchType(req.GetLaunchType())
	if err != nil {
		return nil, err
	}
	if len(req.GetPlacementConstraints()) > 0 || len(req.GetPlacementStrategy()) > 0 {
		return nil, status.Error(codes.Unimplemented, "placementConstraints and placementStrategy are not supported yet; orch binpacks on memory")
	}
	if req.GetHealthCheckGracePeriodSeconds() < 0 {
		return nil, invalid("healthCheckGracePeriodSeconds: %d must be 0 or more", req.GetHealthCheckGracePeriodSeconds())
	}
	if t := req.GetClientToken(); t != "" && !clientTokenPattern.MatchString(t) {
		return nil, invalid("clientToken: must be 1-36 printable ASCII characters")
	}
	if err := validateTags(req.GetTags()); err != nil {
		return nil, err
	}
	dc, err := deploymentConfiguration(nil, req.GetDeploymentConfiguration())
	if err != nil {
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
	now := timestamppb.New(s.now())
	svc := &orchv1.Service{
		ServiceArn:                    s.arns.Service(cluster.GetClusterName(), name),
		ServiceName:                   name,
		ClusterArn:                    cluster.GetClusterArn(),
		Cluster:                       cluster.GetClusterName(),
		Status:                        serviceActive,
		DesiredCount:                  req.GetDesiredCount(),
		TaskDefinition:                td.GetTaskDefinitionArn(),
		DeploymentConfiguration:       dc,
		Deployments:                   []*orchv1.Deployment{newDeployment(td.GetTaskDefinitionArn(), req.GetDesiredCount(), launchType, now)},
		CreatedAt:                     now,
		LaunchType:                    launchType,
		SchedulingStrategy:            "REPLICA",
		Tags:                          req.GetTags(),
		HealthCheckGracePeriodSeconds: req.GetHealthCheckGracePeriodSeconds(),
	}
	for attempt := 0; ; attempt++ {
		cur, err := s.store.Read().Service(nil, svc.GetCluster(), name)
		if err != nil {
			return nil, toStatus(err)
		}
		switch {
		case cur == nil || cur.GetStatus() == serviceInactive:
		case cur.GetStatus() == serviceDraining:
			return nil, invalid("serviceName: %s: Unable to Start a service that is still Draining.", name)
		case sameCreation(cur, svc):
			return &orchv1.CreateServiceResponse{Service: cur}, nil
		default:
			return nil, invalid("serviceName: %s: Creation of service was not idempotent. (an ACTIVE service of that name exists with other settings)", name)
		}
		v, err := s.raft.Apply(ctx, fsm.CmdPutServices, &orchv1.PutServicesCommand{
			Puts: []*orchv1.PutServicesCommand_Put{{Service: svc}},
		})
		if errors.Is(err, state.ErrConflict) && attempt < maxServiceWrites {
			continue // created meanwhile: compare with it
		}
		if err != nil {
			return nil, toStatus(err)
		}
		s.log.Info("service created", "cluster", svc.GetCluster(), "service", name, "task_definition", svc.GetTaskDefinition(), "desired", svc.GetDesiredCount())
		return &orchv1.CreateServiceResponse{Service: v.([]*orchv1.Service)[0]}, nil
	}
}

func checkLaunchType(lt string) (string, error) {
	switch lt {
	case "":
		return "EC2", nil
	case "EC2", "EXTERNAL":
		return lt, nil
	case "FARGATE":
		return "", invalid("launchType: FARGATE is not supported; orch runs tasks on its own container instances (EC2 or EXTERNAL)")
	}
	return "", invalid("launchType: %q must be EC2 or EXTERNAL", lt)
}

// sameCreation reports whether want (a service CreateService would write) asks for what cur
// is: the retry of the call that created it.
func sameCreation(cur, want *orchv1.Service) bool {
	return cur.GetTaskDefinition() == want.GetTaskDefinition() &&
		cur.GetDesiredCount() == want.GetDesiredCount() &&
		cur.GetLaunchType() == want.GetLaunchType() &&
		cur.GetSchedulingStrategy() == want.GetSchedulingStrategy() &&
		cur.GetHealthCheckGracePeriodSeconds() == want.GetHealthCheckGracePeriodSeconds() &&
		proto.Equal(cur.GetDeploymentConfiguration(), want.GetDeploymentConfiguration()) &&
		sameTags(cur.GetTags(), want.GetTags())
}

func sameTags(a, b []*orchv1.Tag) bool {
	if len(a) != len(b) {
		return false
	}
	m := make(map[string]string, len(a))
	for _, t := range a {
		m[t.GetKey()] = t.GetValue()
	}
	for _, t := range b {
		if v, ok := m[t.GetKey()]; !ok || v != t.GetValue() {
			return false
		}
	}
	return true
}

// UpdateService implements orchv1.OrchServer. A new task definition, or forceNewDeployment,
// starts a deployment: a new PRIMARY, the former one ACTIVE until its tasks are replaced. A new
// desiredCount applies to the PRIMARY deployment.
func (s *Server) UpdateService(ctx context.Context, req *orchv1.UpdateServiceRequest) (*orchv1.UpdateServiceResponse, error) {
	if req.GetService() == "" {
		return nil, invalid("service: required")
	}
	if req.DesiredCount != nil && req.GetDesiredCount() < 0 {
		return nil, invalid("desiredCount: %d must be 0 or more", req.GetDesiredCount())
	}
	if req.HealthCheckGracePeriodSeconds != nil && req.GetHealthCheckGracePeriodSeconds() < 0 {
		return nil, invalid("healthCheckGracePeriodSeconds: %d must be 0 or more", req.GetHealthCheckGracePeriodSeconds())
	}
	r := s.store.Read()
	cluster, err := activeCluster(r, clusterName(req.GetCluster()))
	if err != nil {
		return nil, err
	}
	var td *orchv1.TaskDefinition
	if req.GetTaskDefinition() != "" {
		if td, err = s.resolveTaskDefinition(r, req.GetTaskDefinition()); err != nil {
			return nil, err
		}
		if td.GetStatus() != "ACTIVE" {
			return nil, invalid("taskDefinition: %s:%d is INACTIVE", td.GetFamily(), td.GetRevision())
		}
	}
	name := serviceName(req.GetService())
	for attempt := 0; ; attempt++ {
		cur, err := s.store.Read().Service(nil, cluster.GetClusterName(), name)
		if err != nil {
			return nil, toStatus(err)
		}
		if cur == nil {
			return nil, serviceNotFound(cluster.GetClusterName(), req.GetService())
		}
		if cur.GetStatus() != serviceActive {
			return nil, serviceNotActive(cur)
		}
		next, err := updatedService(cur, req, td, timestamppb.New(s.now()))
		if err != nil {
			return nil, err
		}
		if proto.Equal(next, cur) {
			return &orchv1.UpdateServiceResponse{Service: cur}, nil
		}
		v, err := s.raft.Apply(ctx, fsm.CmdPutServices, &orchv1.PutServicesCommand{
			Puts: []*orchv1.PutServicesCommand_Put{{Service: next, ExpectModifyIndex: cur.GetModifyIndex()}},
		})
		if errors.Is(err, state.ErrConflict) && attempt < maxServiceWrites {
			continue
		}
		if err != nil {
			return nil, toStatus(err)
		}
		out := v.([]*orchv1.Service)[0]
		if d := out.GetDeployments()[0]; len(cur.GetDeployments()) == 0 || d.GetId() != cur.GetDeployments()[0].GetId() {
			s.log.Info("service deployment started", "cluster", out.GetCluster(), "service", name, "deployment", d.GetId(), "task_definition", d.GetTaskDefinition())
		}
		return &orchv1.UpdateServiceResponse{Service: out}, nil
	}
}

// updatedService applies an UpdateService request to cur (not changed); td is the requested
// task definition, or nil to keep the PRIMARY deployment's.
func updatedService(cur *orchv1.Service, req *orchv1.UpdateServiceRequest, td *orchv1.TaskDefinition, now *timestamppb.Timestamp) (*orchv1.Service, error) {
	next := proto.Clone(cur).(*orchv1.Service)
	dc, err := deploymentConfiguration(cur.GetDeploymentConfiguration(), req.GetDeploymentConfiguration())
	if err != nil {
		return nil, err
	}
	next.DeploymentConfiguration = dc
	if req.DesiredCount != nil {
		next.DesiredCount = req.GetDesiredCount()
	}
	if req.HealthCheckGracePeriodSeconds != nil {
		next.HealthCheckGracePeriodSeconds = req.GetHealthCheckGracePeriodSeconds()
	}
	var primary *orchv1.Deployment
	if len(next.Deployments) > 0 && next.Deployments[0].GetStatus() == deploymentPrimary {
		primary = next.Deployments[0]
	}
	taskDef := next.GetTaskDefinition()
	if td != nil {
		taskDef = td.GetTaskDefinitionArn()
	}
	if primary == nil || req.GetForceNewDeployment() || taskDef != primary.GetTaskDefinition() {
		if primary != nil {
			primary.Status = deploymentActive
			primary.UpdatedAt = now
		}
		primary = newDeployment(taskDef, next.GetDesiredCount(), next.GetLaunchType(), now)
		next.Deployments = append([]*orchv1.Deployment{primary}, next.Deployments...)
	}
	if primary.GetDesiredCount() != next.GetDesiredCount() {
		primary.DesiredCount = next.GetDesiredCount()
		primary.UpdatedAt = now
	}
	next.TaskDefinition = primary.GetTaskDefinition()
	return next, nil
}

// DeleteService implements orchv1.OrchServer: the service turns DRAINING with desiredCount 0;
// the service controller stops its tasks and then marks it INACTIVE.
func (s *Server) DeleteService(ctx context.Context, req *orchv1.DeleteServiceRequest) (*orchv1.DeleteServiceResponse, error) {
	if req.GetService() == "" {
		return nil, invalid("service: required")
	}
	cluster, err := activeCluster(s.store.Read(), clusterName(req.GetCluster()))
	if err != nil {
		return nil, err
	}
	name := serviceName(req.GetService())
	for attempt := 0; ; attempt++ {
		cur, err := s.store.Read().Service(nil, cluster.GetClusterName(), name)
		if err != nil {
			return nil, toStatus(err)
		}
		if cur == nil {
			return nil, serviceNotFound(cluster.GetClusterName(), req.GetService())
		}
		switch cur.GetStatus() {
		case serviceDraining:
			return &orchv1.DeleteServiceResponse{Service: cur}, nil // deleted already
		case serviceInactive:
			return nil, serviceNotActive(cur)
		}
		if cur.GetDesiredCount() > 0 && !req.GetForce() {
			return nil, invalid("service %s: The service cannot be stopped while it is scaled above 0. (desiredCount is %d; update it to 0 first, or use force)", name, cur.GetDesiredCount())
		}
		next := proto.Clone(cur).(*orchv1.Service)
		next.Status = serviceDraining
		next.DesiredCount = 0
		now := timestamppb.New(s.now())
		for _, d := range next.GetDeployments() {
			if d.GetStatus() == deploymentPrimary && d.GetDesiredCount() != 0 {
				d.DesiredCount = 0
				d.UpdatedAt = now
			}
		}
		v, err := s.raft.Apply(ctx, fsm.CmdPutServices, &orchv1.PutServicesCommand{
			Puts: []*orchv1.PutServicesCommand_Put{{Service: next, ExpectModifyIndex: cur.GetModifyIndex()}},
		})
		if errors.Is(err, state.ErrConflict) && attempt < maxServiceWrites {
			continue
		}
		if err != nil {
			return nil, toStatus(err)
		}
		s.log.Info("service deleted; draining", "cluster", next.GetCluster(), "service", name)
		return &orchv1.DeleteServiceResponse{Service: v.([]*orchv1.Service)[0]}, nil
	}
}

// DescribeServices implements orchv1.OrchServer: up to 10 services by name or ARN; INACTIVE
// ones are still described until they are forgotten; the others are failures (MISSING).
func (s *Server) DescribeServices(ctx context.Context, req *orchv1.DescribeServicesRequest) (*orchv1.DescribeServicesResponse, error) {
	refs := req.GetServices()
	if len(refs) == 0 {
		return nil, invalid("services: at least one service is required")
	}
	if len(refs) > maxDescribeServices {
		return nil, invalid("services: at most %d services per call, got %d", maxDescribeServices, len(refs))
	}
	r := s.store.Read()
	cluster, err := activeCluster(r, clusterName(req.GetCluster()))
	if err != nil {
		return nil, err
	}
	resp := &orchv1.DescribeServicesResponse{}
	for _, ref := range refs {
		name := serviceName(ref)
		svc, err := r.Service(nil, cluster.GetClusterName(), name)
		if err != nil {
			return nil, toStatus(err)
		}
		if svc == nil {
			resp.Failures = append(resp.Failures, &orchv1.Failure{Arn: s.arns.Service(cluster.GetClusterName(), name), Reason: "MISSING"})
			continue
		}
		resp.Services = append(resp.Services, svc)
	}
	return resp, nil
}

// ListServices implements orchv1.OrchServer: the ARNs of the cluster's ACTIVE and DRAINING
// services, by name, maxResults (1-100, default 10, as ECS) at a time.
func (s *Server) ListServices(ctx context.Context, req *orchv1.ListServicesRequest) (*orchv1.ListServicesResponse, error) {
	limit := int(req.GetMaxResults())
	if limit == 0 {
		limit = 10
	}
	if limit < 1 || limit > 100 {
		return nil, invalid("maxResults: %d must be between 1 and 100", req.GetMaxResults())
	}
	after := ""
	if tok := req.GetNextToken(); tok != "" {
		b, err := base64.RawURLEncoding.DecodeString(tok)
		if err != nil || len(b) == 0 {
			return nil, invalid("nextToken: %q is not a token from ListServices", tok)
		}
		after = string(b)
	}
	r := s.store.Read()
	cluster, err := activeCluster(r, clusterName(req.GetCluster()))
	if err != nil {
		return nil, err
	}
	svcs, err := r.ServicesByCluster(nil, cluster.GetClusterName())
	if err != nil {
		return nil, toStatus(err)
	}
	sort.Slice(svcs, func(i, j int) bool { return svcs[i].GetServiceName() < svcs[j].GetServiceName() })
	resp := &orchv1.ListServicesResponse{}
	for _, svc := range svcs {
		if svc.GetStatus() == serviceInactive || svc.GetServiceName() <= after {
			continue
		}
		if len(resp.ServiceArns) == limit {
			resp.NextToken = base64.RawURLEncoding.EncodeToString([]byte(arn.LastSegment(resp.ServiceArns[limit-1])))
			break
		}
		resp.ServiceArns = append(resp.ServiceArns, svc.GetServiceArn())
	}
	return resp, nil
}

// liveServices counts the cluster's ACTIVE and DRAINING services.
func liveServices(r *state.ReadTxn, cluster string) (int, error) {
	svcs, err := r.ServicesByCluster(nil, cluster)
	n := 0
	for _, svc := range svcs {
		if svc.GetStatus() != serviceInactive {
			n++
		}
	}
	return n, err
}
