package fsm

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"orch/pkg/arn"
	"orch/pkg/lifecycle"
	orchv1 "orch/proto/orch/v1"
	"orch/scheduler/state"
)

func TestParseResourceARN(t *testing.T) {
	b := arn.Default
	tests := []struct {
		in     string
		want   ResourceRef
		errHas string // non-empty: the parse must fail with ErrInvalid mentioning this
	}{
		{in: b.Cluster("homelab"), want: ResourceRef{Kind: KindCluster, Cluster: "homelab"}},
		{in: b.TaskDefinition("web", 12), want: ResourceRef{Kind: KindTaskDefinition, Family: "web", Revision: 12}},
		{in: b.Task("homelab", "0123abcd"), want: ResourceRef{Kind: KindTask, Cluster: "homelab", TaskID: "0123abcd"}},
		{in: "arn:aws-cn:ecs:eu-west-1:123456789012:cluster/x", want: ResourceRef{Kind: KindCluster, Cluster: "x"}},
		{in: "", errHas: "not an ARN"},
		{in: "homelab", errHas: "not an ARN"},
		{in: "arn:aws:ecs:local:000000000000", errHas: "not an ARN"},
		{in: "arn:aws:ecs::000000000000:cluster/x", errHas: "not an ARN"},
		{in: "arn:aws:s3:local:000000000000:cluster/x", errHas: `service "s3"`},
		{in: "arn:aws:ecs:local:000000000000:cluster", errHas: "TYPE/NAME"},
		{in: "arn:aws:ecs:local:000000000000:cluster/", errHas: "TYPE/NAME"},
		{in: "arn:aws:ecs:local:000000000000:cluster/a b", errHas: "cluster name"},
		{in: "arn:aws:ecs:local:000000000000:task-definition/web", errHas: "FAMILY:REVISION"},
		{in: "arn:aws:ecs:local:000000000000:task-definition/web:0", errHas: "FAMILY:REVISION"},
		{in: "arn:aws:ecs:local:000000000000:task-definition/web:x", errHas: "FAMILY:REVISION"},
		{in: "arn:aws:ecs:local:000000000000:task/0123abcd", errHas: "task/CLUSTER/ID"},
		{in: "arn:aws:ecs:local:000000000000:task/c/id/more", errHas: "task/CLUSTER/ID"},
		{in: b.ContainerInstance("homelab", "ci1"), errHas: "cannot tag container-instance"},
		{in: "arn:aws:ecs:local:000000000000:service/homelab/web", want: ResourceRef{Kind: KindService, Cluster: "homelab", Service: "web"}},
		{in: "arn:aws:ecs:local:000000000000:service/homelab", errHas: "service/CLUSTER/NAME"},
		{in: "arn:aws:ecs:local:000000000000:task-set/homelab/web/x", errHas: "cannot tag task-set"},
		{in: "arn:aws:ecs:local:000000000000:widget/x", errHas: `unknown resource type "widget"`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseResourceARN(tt.in)
			if tt.errHas != "" {
				if !errors.Is(err, state.ErrInvalid) || !strings.Contains(err.Error(), tt.errHas) {
					t.Fatalf("err = %v, want invalid mentioning %q", err, tt.errHas)
				}
				return
			}
			tt.want.ARN = tt.in
			if err != nil || got != tt.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

func tag(k, v string) *orchv1.Tag { return &orchv1.Tag{Key: k, Value: v} }

func tagString(tags []*orchv1.Tag) string {
	var parts []string
	for _, t := range tags {
		parts = append(parts, t.GetKey()+"="+t.GetValue())
	}
	return strings.Join(parts, ",")
}

func TestMergeTags(t *testing.T) {
	tests := []struct {
		name  string
		tags  []*orchv1.Tag
		set   []*orchv1.Tag
		unset []string
		want  string
	}{
		{"add to none", nil, []*orchv1.Tag{tag("a", "1")}, nil, "a=1"},
		{"replace keeps the order", []*orchv1.Tag{tag("a", "1"), tag("b", "2")}, []*orchv1.Tag{tag("a", "9"), tag("c", "3")}, nil, "a=9,b=2,c=3"},
		{"empty value", []*orchv1.Tag{tag("a", "1")}, []*orchv1.Tag{tag("a", "")}, nil, "a="},
		{"keys are case-sensitive", []*orchv1.Tag{tag("a", "1")}, []*orchv1.Tag{tag("A", "2")}, nil, "a=1,A=2"},
		{"remove", []*orchv1.Tag{tag("a", "1"), tag("b", "2"), tag("c", "3")}, nil, []string{"b", "missing"}, "a=1,c=3"},
		{"remove all", []*orchv1.Tag{tag("a", "1")}, nil, []string{"a"}, ""},
		{"duplicates collapse, last wins", []*orchv1.Tag{tag("a", "1"), tag("a", "2")}, []*orchv1.Tag{tag("b", "1"), tag("b", "2")}, nil, "a=2,b=2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := tagString(tt.tags)
			got := MergeTags(tt.tags, tt.set, tt.unset)
			if s := tagString(got); s != tt.want {
				t.Fatalf("got %s, want %s", s, tt.want)
			}
			if tagString(tt.tags) != before {
				t.Fatal("MergeTags changed its input")
			}
		})
	}
}

// taggedHarness has a cluster "a", task definition web:1, task t1 and service svc in a.
func taggedHarness(t *testing.T) (h *harness, clusterARN, tdARN, taskARN string) {
	h = newHarness(t)
	h.must(CmdCreateCluster, &orchv1.CreateClusterCommand{Cluster: &orchv1.Cluster{ClusterName: "a", Tags: []*orchv1.Tag{tag("team", "web")}}})
	h.must(CmdPutServices, &orchv1.PutServicesCommand{Puts: []*orchv1.PutServicesCommand_Put{{Service: &orchv1.Service{
		Cluster: "a", ServiceName: "svc", ServiceArn: arn.Default.Service("a", "svc"), Status: "ACTIVE"}}}})
	h.must(CmdRegisterTaskDefinition, &orchv1.RegisterTaskDefinitionCommand{TaskDefinition: &orchv1.TaskDefinition{Family: "web"}})
	tk := task("t1", "10.64.0.2")
	tk.TaskArn = arn.Default.Task("a", "t1")
	h.must(CmdPlaceTasks, &orchv1.PlaceTasksCommand{Tasks: []*orchv1.Task{tk}})
	return h, arn.Default.Cluster("a"), arn.Default.TaskDefinition("web", 1), tk.TaskArn
}

func TestTagResource(t *testing.T) {
	h, clusterARN, tdARN, taskARN := taggedHarness(t)
	tagCmd := func(arn string, set []*orchv1.Tag, unset ...string) *orchv1.TagResourceCommand {
		return &orchv1.TagResourceCommand{ResourceArn: arn, Tags: set, Untag: unset}
	}
	read := func(ref string) string {
		t.Helper()
		tags, err := ResourceTags(h.f.Store().Read(), arn.Default, ref)
		if err != nil {
			t.Fatalf("ResourceTags(%s): %v", ref, err)
		}
		return tagString(tags)
	}

	// Each kind of resource, in one entry each.
	for _, tt := range []struct{ arn, want string }{
		{clusterARN, "team=web,env=prod"},
		{tdARN, "env=prod"},
		{taskARN, "env=prod"},
		{arn.Default.Service("a", "svc"), "env=prod"},
	} {
		got := h.must(CmdTagResource, tagCmd(tt.arn, []*orchv1.Tag{tag("env", "prod")})).([]*orchv1.Tag)
		if tagString(got) != tt.want || read(tt.arn) != tt.want {
			t.Fatalf("%s: returned %s, stored %s, want %s", tt.arn, tagString(got), read(tt.arn), tt.want)
		}
	}
	// Replace one value and remove another key in the same entry.
	h.must(CmdTagResource, tagCmd(clusterARN, []*orchv1.Tag{tag("env", "dev")}, "team"))
	if got := read(clusterARN); got != "env=dev" {
		t.Fatalf("cluster tags %s, want env=dev", got)
	}
	// The rest of the objects is unchanged; the task's status updates keep its tags.
	c, _ := h.f.Store().Read().Cluster(nil, "a")
	if c.GetCidr() != "10.64.0.0/16" || c.GetStatus() != "ACTIVE" {
		t.Fatalf("cluster changed: %v", c)
	}
	h.must(CmdTaskStatus, &orchv1.TaskStatusCommand{HostId: "h1", Tasks: []*orchv1.TaskStatus{{TaskId: "t1", LastStatus: lifecycle.Running}}})
	if got := read(taskARN); got != "env=prod" {
		t.Fatalf("task tags after a status report: %s", got)
	}
	tk, _ := h.f.Store().Read().Task(nil, "t1")
	if tk.GetLastStatus() != lifecycle.Running || tk.GetModifyIndex() != h.index {
		t.Fatalf("task: %v", tk)
	}
	// Tagging a service moves its modify index, so the service controller's next
	// compare-and-set write does not drop the tags.
	svc, _ := h.f.Store().Read().Service(nil, "a", "svc")
	before := svc.GetModifyIndex()
	h.must(CmdTagResource, tagCmd(svc.GetServiceArn(), []*orchv1.Tag{tag("tier", "1")}))
	if svc, _ = h.f.Store().Read().Service(nil, "a", "svc"); svc.GetModifyIndex() == before {
		t.Fatal("tagging a service kept its modify index")
	}

	// Up to the limit, not beyond: a refused entry changes nothing.
	var many []*orchv1.Tag
	for i := 0; i < MaxTagsPerResource-1; i++ {
		many = append(many, tag(fmt.Sprintf("k%02d", i), "v"))
	}
	h.must(CmdTagResource, tagCmd(tdARN, many)) // env + 49 = 50
	_, err := h.apply(CmdTagResource, tagCmd(tdARN, []*orchv1.Tag{tag("one-more", "v"), tag("env", "x")}))
	if !errors.Is(err, state.ErrInvalid) || !strings.Contains(err.Error(), "would have 51 tags") || !strings.Contains(err.Error(), tdARN) {
		t.Fatalf("51 tags: err = %v", err)
	}
	if got, _ := ResourceTags(h.f.Store().Read(), arn.Default, tdARN); len(got) != MaxTagsPerResource || got[0].GetValue() != "prod" {
		t.Fatalf("refused entry changed the tags: %s", tagString(got))
	}
	// Replacing existing keys and removing while adding stays within the limit.
	h.must(CmdTagResource, tagCmd(tdARN, []*orchv1.Tag{tag("one-more", "v"), tag("env", "x")}, "k00"))
	if got, _ := ResourceTags(h.f.Store().Read(), arn.Default, tdARN); len(got) != MaxTagsPerResource {
		t.Fatalf("%d tags, want %d", len(got), MaxTagsPerResource)
	}
}

func TestTagResourceNotFound(t *testing.T) {
	h, clusterARN, _, _ := taggedHarness(t)
	other := arn.Builder{Region: "elsewhere", Account: "111111111111"}
	h.must(CmdCreateCluster, &orchv1.CreateClusterCommand{Cluster: &orchv1.Cluster{ClusterName: "gone"}})
	h.must(CmdDeleteCluster, &orchv1.DeleteClusterCommand{ClusterName: "gone"})
	for _, a := range []string{
		arn.Default.Cluster("nope"),
		arn.Default.Cluster("gone"),                    // deleted: INACTIVE
		other.Cluster("a"),                             // another region and account
		arn.Default.TaskDefinition("web", 2),           // no such revision
		arn.Default.TaskDefinition("db", 1),            // no such family
		arn.Default.Task("a", "t9"),                    // no such task
		arn.Default.Task("gone", "t1"),                 // the task is in another cluster
		arn.Default.Service("a", "nope"),               // no such service
		strings.Replace(clusterARN, ":aws:", ":x:", 1), // another partition
	} {
		t.Run(a, func(t *testing.T) {
			_, err := h.apply(CmdTagResource, &orchv1.TagResourceCommand{ResourceArn: a, Tags: []*orchv1.Tag{tag("k", "v")}})
			if !errors.Is(err, state.ErrNotFound) || !strings.Contains(err.Error(), a) {
				t.Fatalf("tag: err = %v, want not found naming %s", err, a)
			}
			if _, err := ResourceTags(h.f.Store().Read(), arn.Default, a); !errors.Is(err, state.ErrNotFound) {
				t.Fatalf("read: err = %v, want not found", err)
			}
		})
	}
	if _, err := h.apply(CmdTagResource, &orchv1.TagResourceCommand{ResourceArn: "nope", Tags: []*orchv1.Tag{tag("k", "v")}}); !errors.Is(err, state.ErrInvalid) {
		t.Fatalf("malformed ARN: err = %v, want invalid", err)
	}
}

func TestTagsSurviveSnapshot(t *testing.T) {
	h, clusterARN, tdARN, taskARN := taggedHarness(t)
	for _, a := range []string{clusterARN, tdARN, taskARN} {
		h.must(CmdTagResource, &orchv1.TagResourceCommand{ResourceArn: a, Tags: []*orchv1.Tag{tag("backup", "daily")}})
	}
	snap, err := h.f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := snap.(*snapshot).txn.WriteSnapshot(&buf); err != nil {
		t.Fatal(err)
	}
	h2 := newHarness(t)
	if err := h2.f.Restore(io.NopCloser(bytes.NewReader(buf.Bytes()))); err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{clusterARN, tdARN, taskARN} {
		want, _ := ResourceTags(h.f.Store().Read(), arn.Default, a)
		got, err := ResourceTags(h2.f.Store().Read(), arn.Default, a)
		if err != nil || len(got) != len(want) {
			t.Fatalf("%s after restore: %s, %v; want %s", a, tagString(got), err, tagString(want))
		}
		for i := range want {
			if !proto.Equal(got[i], want[i]) {
				t.Fatalf("%s after restore: %s, want %s", a, tagString(got), tagString(want))
			}
		}
	}
}
