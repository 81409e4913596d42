package arn

import "testing"

func TestBuildAndRead(t *testing.T) {
	b := Default
	tests := []struct{ got, want string }{
		{b.Cluster("homelab"), "arn:aws:ecs:local:000000000000:cluster/homelab"},
		{b.TaskDefinition("web", 3), "arn:aws:ecs:local:000000000000:task-definition/web:3"},
		{b.Task("homelab", "abc"), "arn:aws:ecs:local:000000000000:task/homelab/abc"},
		{b.ContainerInstance("homelab", "n1"), "arn:aws:ecs:local:000000000000:container-instance/homelab/n1"},
		{b.Service("homelab", "web"), "arn:aws:ecs:local:000000000000:service/homelab/web"},
		{LastSegment("arn:aws:ecs:local:000000000000:service/homelab/web"), "web"},
		{LastSegment("arn:aws:ecs:local:000000000000:task/homelab/abc"), "abc"},
		{LastSegment("abc"), "abc"},
		{ClusterName("arn:aws:ecs:local:000000000000:cluster/homelab"), "homelab"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}
