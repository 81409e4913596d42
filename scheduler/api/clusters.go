package api

import (
	"context"
	"net/netip"
	"regexp"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"orch/pkg/lifecycle"
	orchv1 "orch/proto/orch/v1"
	"orch/scheduler/fsm"
	"orch/scheduler/state"
)

var namePattern = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,255}$`)

// CreateCluster implements orchv1.OrchServer.
func (s *Server) CreateCluster(ctx context.Context, req *orchv1.CreateClusterRequest) (*orchv1.CreateClusterResponse, error) {
	name := req.GetClusterName()
	if name == "" {
		name = "default"
	}
	if !namePattern.MatchString(name) {
		return nil, invalid("clusterName: %q must be 1-255 letters, digits, hyphens or underscores", name)
	}
	if c := req.GetCidr(); c != "" {
		p, err := netip.ParsePrefix(c)
		if err != nil || !p.Addr().Is4() {
			return nil, invalid("cidr: %q is not an IPv4 CIDR such as 10.50.0.0/16", c)
		}
		if p.Bits() > 23 || p.Bits() < 8 {
			return nil, invalid("cidr: %q must be between /8 and /23 (each container instance takes a /24)", c)
		}
		if p.Masked() != p {
			return nil, invalid("cidr: %q has host bits set; did you mean %s?", c, p.Masked())
		}
	}
	if err := validateTags(req.GetTags()); err != nil {
		return nil, err
	}
	cmd := &orchv1.CreateClusterCommand{Cluster: &orchv1.Cluster{
		ClusterName: name, Tags: req.GetTags(), Cidr: req.GetCidr(), CreatedAt: timestamppb.New(s.now()),
	}}
	v, err := s.raft.Apply(ctx, fsm.CmdCreateCluster, cmd)
	if err != nil {
		return nil, toStatus(err)
	}
	return &orchv1.CreateClusterResponse{Cluster: s.clusterView(s.store.Read(), v.(*orchv1.Cluster))}, nil
}

// clusterView fills the counts ECS reports, computed from the state.
func (s *Server) clusterView(r *state.ReadTxn, c *orchv1.Cluster) *orchv1.Cluster {
	out := proto.Clone(c).(*orchv1.Cluster)
	instances, _ := r.InstancesByCluster(nil, c.GetClusterName())
	for _, ci := range instances {
		if ci.GetStatus() != "INACTIVE" {
			out.RegisteredContainerInstancesCount++
		}
	}
	if n, err := liveServices(r, c.GetClusterName()); err == nil {
		out.ActiveServicesCount = int32(n)
	}
	tasks, _ := r.TasksByCluster(c.GetClusterName())
	for _, t := range tasks {
		switch t.GetLastStatus() {
		case lifecycle.Running:
			out.RunningTasksCount++
		case lifecycle.Provisioning, lifecycle.Pending, lifecycle.Activating:
			out.PendingTasksCount++
		}
	}
	return out
}

// DescribeClusters implements orchv1.OrchServer.
func (s *Server) DescribeClusters(ctx context.Context, req *orchv1.DescribeClustersRequest) (*orchv1.DescribeClustersResponse, error) {
	names := req.GetClusters()
	if len(names) == 0 {
		names = []string{"default"}
	}
	r := s.store.Read()
	resp := &orchv1.DescribeClustersResponse{}
	for _, n := range names {
		c, err := r.Cluster(nil, clusterName(n))
		if err != nil {
			return nil, toStatus(err)
		}
		if c == nil {
			resp.Failures = append(resp.Failures, &orchv1.Failure{Arn: s.arns.Cluster(clusterName(n)), Reason: "MISSING"})
			continue
		}
		resp.Clusters = append(resp.Clusters, s.clusterView(r, c))
	}
	return resp, nil
}

// ListClusters implements orchv1.OrchServer.
func (s *Server) ListClusters(ctx context.Context, req *orchv1.ListClustersRequest) (*orchv1.ListClustersResponse, error) {
	cs, err := s.store.Read().Clusters(nil)
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &orchv1.ListClustersResponse{}
	for _, c := range cs {
		if c.GetStatus() == "ACTIVE" {
			resp.ClusterArns = append(resp.ClusterArns, c.GetClusterArn())
		}
	}
	return resp, nil
}

// DeleteCluster implements orchv1.OrchServer.
func (s *Server) DeleteCluster(ctx context.Context, req *orchv1.DeleteClusterRequest) (*orchv1.DeleteClusterResponse, error) {
	if req.GetCluster() == "" {
		return nil, invalid("cluster: required")
	}
	name := clusterName(req.GetCluster())
	// Checked here rather than in the FSM: a service created between this read and the
	// delete's entry would be left in an INACTIVE cluster, where the controller cannot place
	// its tasks, and DeleteService still drains it.
	n, err := liveServices(s.store.Read(), name)
	if err != nil {
		return nil, toStatus(err)
	}
	if n > 0 {
		return nil, status.Errorf(codes.FailedPrecondition, "cluster %s: The Cluster cannot be deleted while Services are active. (%d ACTIVE or DRAINING services)", name, n)
	}
	v, err := s.raft.Apply(ctx, fsm.CmdDeleteCluster, &orchv1.DeleteClusterCommand{
		ClusterName: name, At: timestamppb.New(s.now()),
	})
	if err != nil {
		return nil, toStatus(err)
	}
	return &orchv1.DeleteClusterResponse{Cluster: v.(*orchv1.Cluster)}, nil
}
