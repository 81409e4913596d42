package api

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"orch/pkg/arn"
	orchv1 "orch/proto/orch/v1"
	"orch/scheduler/fsm"
	"orch/scheduler/raftnode"
)

func tagList(kv ...string) []*orchv1.Tag {
	var tags []*orchv1.Tag
	for i := 0; i+1 < len(kv); i += 2 {
		tags = append(tags, &orchv1.Tag{Key: kv[i], Value: kv[i+1]})
	}
	return tags
}

func tagsString(tags []*orchv1.Tag) string {
	var parts []string
	for _, t := range tags {
		parts = append(parts, t.GetKey()+"="+t.GetValue())
	}
	return strings.Join(parts, ",")
}

func listTags(t *testing.T, s *Server, resource string) string {
	t.Helper()
	resp, err := s.ListTagsForResource(context.Background(), &orchv1.ListTagsForResourceRequest{ResourceArn: resource})
	if err != nil {
		t.Fatalf("ListTagsForResource(%s): %v", resource, err)
	}
	return tagsString(resp.GetTags())
}

func TestTagUntagList(t *testing.T) {
	s, _ := newServer(t, 4096)
	register(t, s, 128)
	ctx := context.Background()
	run, err := s.RunTask(ctx, &orchv1.RunTaskRequest{Cluster: "homelab", TaskDefinition: "web", Tags: tagList("owner", "me")})
	if err != nil || len(run.GetTasks()) != 1 {
		t.Fatalf("RunTask: %v %v", run, err)
	}
	resources := []struct{ name, arn, before string }{
		{"cluster", arn.Default.Cluster("homelab"), ""},
		{"task definition", arn.Default.TaskDefinition("web", 1), ""},
		{"task", run.GetTasks()[0].GetTaskArn(), "owner=me"},
	}
	for _, r := range resources {
		t.Run(r.name, func(t *testing.T) {
			if got := listTags(t, s, r.arn); got != r.before {
				t.Fatalf("tags before: %q, want %q", got, r.before)
			}
			if _, err := s.TagResource(ctx, &orchv1.TagResourceRequest{ResourceArn: r.arn, Tags: tagList("env", "prod", "team", "web")}); err != nil {
				t.Fatal(err)
			}
			if _, err := s.TagResource(ctx, &orchv1.TagResourceRequest{ResourceArn: r.arn, Tags: tagList("env", "dev", "note", "")}); err != nil {
				t.Fatal(err)
			}
			want := strings.TrimPrefix(r.before+",env=dev,team=web,note=", ",")
			if got := listTags(t, s, r.arn); got != want {
				t.Fatalf("after tagging: %q, want %q", got, want)
			}
			if _, err := s.UntagResource(ctx, &orchv1.UntagResourceRequest{ResourceArn: r.arn, TagKeys: []string{"team", "not-there"}}); err != nil {
				t.Fatal(err)
			}
			want = strings.TrimPrefix(r.before+",env=dev,note=", ",")
			if got := listTags(t, s, r.arn); got != want {
				t.Fatalf("after untagging: %q, want %q", got, want)
			}
		})
	}
	// Describe calls show the same tags.
	desc, _ := s.DescribeClusters(ctx, &orchv1.DescribeClustersRequest{Clusters: []string{"homelab"}})
	if got := tagsString(desc.GetClusters()[0].GetTags()); got != "env=dev,note=" {
		t.Fatalf("describe-clusters tags: %q", got)
	}
	td, _ := s.DescribeTaskDefinition(ctx, &orchv1.DescribeTaskDefinitionRequest{TaskDefinition: "web:1"})
	if got := tagsString(td.GetTags()); got != "env=dev,note=" {
		t.Fatalf("describe-task-definition tags: %q", got)
	}
}

func TestTagErrors(t *testing.T) {
	s, d := newServer(t, 4096)
	register(t, s, 128)
	ctx := context.Background()
	cluster := arn.Default.Cluster("homelab")
	td := arn.Default.TaskDefinition("web", 1)
	var fifty []*orchv1.Tag
	for i := 0; i < 50; i++ {
		fifty = append(fifty, &orchv1.Tag{Key: fmt.Sprintf("k%02d", i)})
	}
	if _, err := s.TagResource(ctx, &orchv1.TagResourceRequest{ResourceArn: td, Tags: fifty}); err != nil {
		t.Fatalf("50 tags: %v", err)
	}
	tagReq := func(a string, tags ...*orchv1.Tag) func() error {
		return func() error {
			_, err := s.TagResource(ctx, &orchv1.TagResourceRequest{ResourceArn: a, Tags: tags})
			return err
		}
	}
	untagReq := func(a string, keys ...string) func() error {
		return func() error {
			_, err := s.UntagResource(ctx, &orchv1.UntagResourceRequest{ResourceArn: a, TagKeys: keys})
			return err
		}
	}
	listReq := func(a string) func() error {
		return func() error {
			_, err := s.ListTagsForResource(ctx, &orchv1.ListTagsForResourceRequest{ResourceArn: a})
			return err
		}
	}
	tag := func(k, v string) *orchv1.Tag { return &orchv1.Tag{Key: k, Value: v} }
	unknown := arn.Default.Cluster("nope")
	tests := []struct {
		name    string
		call    func() error
		code    codes.Code
		msg     string
		applied bool // the request reached Raft (the FSM refused it)
	}{
		{"tag without ARN", tagReq("", tag("a", "b")), codes.InvalidArgument, "resourceArn: required", false},
		{"tag malformed ARN", tagReq("homelab", tag("a", "b")), codes.InvalidArgument, `resource ARN "homelab": not an ARN`, false},
		{"tag container instance", tagReq(arn.Default.ContainerInstance("homelab", "x"), tag("a", "b")), codes.InvalidArgument, "cannot tag container-instance", false},
		{"tag unknown cluster", tagReq(unknown, tag("a", "b")), codes.NotFound, unknown, true},
		{"tag unknown task", tagReq(arn.Default.Task("homelab", "0123"), tag("a", "b")), codes.NotFound, "task/homelab/0123", true},
		{"no tags", tagReq(cluster), codes.InvalidArgument, "tags: at least one tag", false},
		{"empty key", tagReq(cluster, tag("", "v")), codes.InvalidArgument, "tags[0].key: required", false},
		{"reserved key", tagReq(cluster, tag("ok", "v"), tag("aws:cloudformation", "v")), codes.InvalidArgument, "tags[1].key: \"aws:cloudformation\": keys starting with aws: are reserved", false},
		{"reserved key any case", tagReq(cluster, tag("AwS:x", "v")), codes.InvalidArgument, "reserved", false},
		{"key too long", tagReq(cluster, tag(strings.Repeat("k", 129), "v")), codes.InvalidArgument, "tags[0].key: 129 characters, at most 128", false},
		{"value too long", tagReq(cluster, tag("k", strings.Repeat("é", 257))), codes.InvalidArgument, "tags[0].value: 257 characters, at most 256", false},
		{"bad character", tagReq(cluster, tag("a,b", "v")), codes.InvalidArgument, "tags[0].key: \"a,b\": only letters", false},
		{"bad character in value", tagReq(cluster, tag("a", "x;y")), codes.InvalidArgument, "tags[0].value", false},
		{"invalid UTF-8", tagReq(cluster, tag("a\xff", "v")), codes.InvalidArgument, "not valid UTF-8", false},
		{"duplicate key", tagReq(cluster, tag("a", "1"), tag("a", "2")), codes.InvalidArgument, "tags[1].key: \"a\" is given twice", false},
		{"51 in one request", tagReq(cluster, append(fifty, tag("x", "y"))...), codes.InvalidArgument, "at most 50 tags per resource, got 51", false},
		{"51 after the change", tagReq(td, tag("x", "y")), codes.InvalidArgument, "would have 51 tags", true},
		{"untag without keys", untagReq(cluster), codes.InvalidArgument, "tagKeys: at least one key", false},
		{"untag reserved key", untagReq(cluster, "aws:x"), codes.InvalidArgument, "tagKeys[0]", false},
		{"untag unknown resource", untagReq(unknown, "a"), codes.NotFound, unknown, true},
		{"list malformed ARN", listReq("arn:aws:ecs:local:000000000000:task-definition/web"), codes.InvalidArgument, "FAMILY:REVISION", false},
		{"list unknown ARN", listReq(unknown), codes.NotFound, unknown, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := d.Index()
			err := tt.call()
			if status.Code(err) != tt.code || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("err = %v, want %s mentioning %q", err, tt.code, tt.msg)
			}
			if applied := d.Index() != before; applied != tt.applied {
				t.Fatalf("reached raft: %v, want %v", applied, tt.applied)
			}
		})
	}
	// Nothing refused changed the tags.
	if got := listTags(t, s, cluster); got != "" {
		t.Fatalf("cluster tags %q", got)
	}
	// Unicode keys up to 128 characters (not bytes) are fine.
	if _, err := s.TagResource(ctx, &orchv1.TagResourceRequest{ResourceArn: cluster, Tags: []*orchv1.Tag{tag(strings.Repeat("ü", 128), "Grüße @home: a/b+c=d_e.f-g")}}); err != nil {
		t.Fatalf("128 unicode characters: %v", err)
	}
}

// TestConcurrentTagging is the chaos test's workload on one server: every acknowledged
// TagResource is visible afterwards.
func TestConcurrentTagging(t *testing.T) {
	s, _ := newServer(t, 4096)
	cluster := arn.Default.Cluster("homelab")
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := 0; i < 40; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.TagResource(context.Background(), &orchv1.TagResourceRequest{ResourceArn: cluster,
				Tags: tagList(fmt.Sprintf("k%02d", i), fmt.Sprint(i))})
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	resp, _ := s.ListTagsForResource(context.Background(), &orchv1.ListTagsForResourceRequest{ResourceArn: cluster})
	got := map[string]string{}
	for _, tg := range resp.GetTags() {
		got[tg.GetKey()] = tg.GetValue()
	}
	for i := 0; i < 40; i++ {
		if got[fmt.Sprintf("k%02d", i)] != fmt.Sprint(i) {
			t.Fatalf("tag k%02d lost: %v", i, got)
		}
	}
}

func TestConsistentRead(t *testing.T) {
	base, d := newServer(t, 4096)
	cluster := arn.Default.Cluster("homelab")
	ctx := context.Background()
	var calls int
	var barrierErr error
	s := New(base.store, d, WithLogger(base.log), WithConsistentRead(func(ctx context.Context) error {
		calls++
		if barrierErr != nil {
			return barrierErr
		}
		// A write that commits while the barrier waits must be seen by the read that follows.
		_, err := d.Apply(ctx, fsm.CmdTagResource, &orchv1.TagResourceCommand{ResourceArn: cluster, Tags: tagList("during", "barrier")})
		return err
	}))

	// A local read does not pass the barrier.
	if got := listTags(t, s, cluster); got != "" || calls != 0 {
		t.Fatalf("local read: tags %q, %d barrier calls", got, calls)
	}
	resp, err := s.ListTagsForResource(ctx, &orchv1.ListTagsForResourceRequest{ResourceArn: cluster, Consistent: true})
	if err != nil || calls != 1 || tagsString(resp.GetTags()) != "during=barrier" {
		t.Fatalf("consistent read: %v, %v, %d barrier calls", resp, err, calls)
	}
	// A scheduler that is not the leader refuses; the client retries another.
	barrierErr = fmt.Errorf("verify leadership: %w", raftnode.ErrNotLeader)
	_, err = s.ListTagsForResource(ctx, &orchv1.ListTagsForResourceRequest{ResourceArn: cluster, Consistent: true})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("not leader: err = %v, want Unavailable", err)
	}
	barrierErr = context.DeadlineExceeded
	_, err = s.ListTagsForResource(ctx, &orchv1.ListTagsForResourceRequest{ResourceArn: cluster, Consistent: true})
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("barrier timeout: err = %v", err)
	}
	// Without a barrier (one scheduler), consistent reads are local.
	if resp, err := base.ListTagsForResource(ctx, &orchv1.ListTagsForResourceRequest{ResourceArn: cluster, Consistent: true}); err != nil ||
		tagsString(resp.GetTags()) != "during=barrier" {
		t.Fatalf("consistent read without a barrier: %v, %v", resp, err)
	}
}
