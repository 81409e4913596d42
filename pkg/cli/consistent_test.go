package cli

import (
	"context"
	"testing"

	"google.golang.org/grpc/metadata"

	"orch/pkg/client"
	orchv1 "orch/proto/orch/v1"
)

func TestConsistentFlag(t *testing.T) {
	tests := []struct {
		args []string
		want bool
	}{
		{[]string{"list-clusters"}, false},
		{[]string{"--consistent", "list-clusters"}, true},
		{[]string{"list-clusters", "--consistent"}, true},
	}
	for _, tt := range tests {
		var got bool
		f := &fakeOrch{ListClustersFn: func(ctx context.Context, _ *orchv1.ListClustersRequest) (*orchv1.ListClustersResponse, error) {
			md, _ := metadata.FromIncomingContext(ctx)
			got = len(md.Get(client.ConsistentHeader)) > 0
			return &orchv1.ListClustersResponse{}, nil
		}}
		if r := orchctl(t, serve(t, f), "", tt.args...); r.code != 0 {
			t.Fatalf("%v: exit %d: %s", tt.args, r.code, r.stderr)
		}
		if got != tt.want {
			t.Errorf("%v: consistent header sent = %v, want %v", tt.args, got, tt.want)
		}
	}
}

func TestTokenFlagAndEnv(t *testing.T) {
	tests := []struct {
		name, env string
		args      []string
		want      string
	}{
		{"none", "", []string{"list-clusters"}, ""},
		{"flag", "", []string{"--token", "orch_a", "list-clusters"}, "Bearer orch_a"},
		{"env", "orch_b", []string{"list-clusters"}, "Bearer orch_b"},
		{"flag wins", "orch_b", []string{"--token", "orch_a", "list-clusters"}, "Bearer orch_a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(client.EnvToken, tt.env)
			var got string
			f := &fakeOrch{ListClustersFn: func(ctx context.Context, _ *orchv1.ListClustersRequest) (*orchv1.ListClustersResponse, error) {
				md, _ := metadata.FromIncomingContext(ctx)
				if v := md.Get("authorization"); len(v) > 0 {
					got = v[0]
				}
				return &orchv1.ListClustersResponse{}, nil
			}}
			if r := orchctl(t, serve(t, f), "", tt.args...); r.code != 0 {
				t.Fatalf("exit %d: %s", r.code, r.stderr)
			}
			if got != tt.want {
				t.Errorf("authorization = %q, want %q", got, tt.want)
			}
		})
	}
}
