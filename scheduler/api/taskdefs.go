package api

import (
	"context"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"orch/pkg/taskdef"
	orchv1 "orch/proto/orch/v1"
	"orch/scheduler/fsm"
	"orch/scheduler/state"
)

// RegisterTaskDefinition implements orchv1.OrchServer: each call makes revision n+1.
func (s *Server) RegisterTaskDefinition(ctx context.Context, req *orchv1.RegisterTaskDefinitionRequest) (*orchv1.RegisterTaskDefinitionResponse, error) {
	td := req.GetTaskDefinition()
	if td == nil {
		return nil, invalid("taskDefinition: required")
	}
	td = proto.Clone(td).(*orchv1.TaskDefinition)
	// Output-only fields are the server's to set.
	td.TaskDefinitionArn, td.Revision, td.Status = "", 0, ""
	td.RegisteredAt, td.DeregisteredAt, td.RegisteredBy = timestamppb.New(s.now()), nil, ""
	td.Compatibilities = []string{"EC2", "EXTERNAL"}
	if err := taskdef.Validate(td); err != nil {
		return nil, toStatus(err)
	}
	v, err := s.raft.Apply(ctx, fsm.CmdRegisterTaskDefinition, &orchv1.RegisterTaskDefinitionCommand{TaskDefinition: td})
	if err != nil {
		return nil, toStatus(err)
	}
	out := v.(*orchv1.TaskDefinition)
	return &orchv1.RegisterTaskDefinitionResponse{TaskDefinition: out, Tags: out.GetTags()}, nil
}

// resolveTaskDefinition finds family, family:rev or an ARN.
func (s *Server) resolveTaskDefinition(r *state.ReadTxn, ref string) (*orchv1.TaskDefinition, error) {
	if ref == "" {
		return nil, invalid("taskDefinition: required")
	}
	family, rev, err := taskdef.ParseRef(ref)
	if err != nil {
		return nil, invalid("taskDefinition: %v", err)
	}
	td, err := r.TaskDefinition(nil, family, rev)
	if err != nil {
		return nil, toStatus(err)
	}
	if td == nil {
		return nil, status.Errorf(codes.NotFound, "taskDefinition: %s: unable to describe task definition", ref)
	}
	return td, nil
}

// DescribeTaskDefinition implements orchv1.OrchServer.
func (s *Server) DescribeTaskDefinition(ctx context.Context, req *orchv1.DescribeTaskDefinitionRequest) (*orchv1.DescribeTaskDefinitionResponse, error) {
	td, err := s.resolveTaskDefinition(s.store.Read(), req.GetTaskDefinition())
	if err != nil {
		return nil, err
	}
	return &orchv1.DescribeTaskDefinitionResponse{TaskDefinition: td, Tags: td.GetTags()}, nil
}

// ListTaskDefinitions implements orchv1.OrchServer.
func (s *Server) ListTaskDefinitions(ctx context.Context, req *orchv1.ListTaskDefinitionsRequest) (*orchv1.ListTaskDefinitionsResponse, error) {
	want := strings.ToUpper(req.GetStatus())
	switch want {
	case "":
		want = "ACTIVE"
	case "ACTIVE", "INACTIVE", "ALL":
	default:
		return nil, invalid("status: %q must be ACTIVE, INACTIVE or ALL", req.GetStatus())
	}
	desc := false
	switch strings.ToUpper(req.GetSort()) {
	case "", "ASC":
	case "DESC":
		desc = true
	default:
		return nil, invalid("sort: %q must be ASC or DESC", req.GetSort())
	}
	tds, err := s.store.Read().TaskDefinitions(nil)
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &orchv1.ListTaskDefinitionsResponse{}
	for _, td := range tds {
		if !strings.HasPrefix(td.GetFamily(), req.GetFamilyPrefix()) {
			continue
		}
		if want != "ALL" && td.GetStatus() != want {
			continue
		}
		resp.TaskDefinitionArns = append(resp.TaskDefinitionArns, td.GetTaskDefinitionArn())
	}
	if desc {
		for i, j := 0, len(resp.TaskDefinitionArns)-1; i < j; i, j = i+1, j-1 {
			resp.TaskDefinitionArns[i], resp.TaskDefinitionArns[j] = resp.TaskDefinitionArns[j], resp.TaskDefinitionArns[i]
		}
	}
	return resp, nil
}

// DeregisterTaskDefinition implements orchv1.OrchServer: the revision stays describable as
// INACTIVE; no new task can start from it.
func (s *Server) DeregisterTaskDefinition(ctx context.Context, req *orchv1.DeregisterTaskDefinitionRequest) (*orchv1.DeregisterTaskDefinitionResponse, error) {
	family, rev, err := taskdef.ParseRef(req.GetTaskDefinition())
	if err != nil || rev == 0 {
		return nil, invalid("taskDefinition: %q must be family:revision", req.GetTaskDefinition())
	}
	v, err := s.raft.Apply(ctx, fsm.CmdDeregisterTaskDefinition, &orchv1.DeregisterTaskDefinitionCommand{
		Family: family, Revision: rev, At: timestamppb.New(s.now()),
	})
	if err != nil {
		return nil, toStatus(err)
	}
	return &orchv1.DeregisterTaskDefinitionResponse{TaskDefinition: v.(*orchv1.TaskDefinition)}, nil
}
