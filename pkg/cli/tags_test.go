package cli

import (
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	orchv1 "orch/proto/orch/v1"
)

// unaryCase is one orchctl invocation against fakes of both services that answer from
// responses and errs.
type unaryCase struct {
	name      string
	args      []string
	responses map[string]proto.Message
	errs      map[string]error
	wantCalls []call
	wantCode  int
	wantOut   *string  // exact stdout, if set
	outHas    []string // substrings of stdout
	errHas    []string // substrings of stderr
}

func str(s string) *string { return &s }

func runUnaryCases(t *testing.T, tests []unaryCase) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fx := &fixture{responses: tt.responses, errs: tt.errs}
			addr := serveAll(t, fx.tagFake(), fx.operatorFake())
			res := orchctl(t, addr, "", tt.args...)
			if res.code != tt.wantCode {
				t.Errorf("exit code %d, want %d\nstdout:\n%s\nstderr:\n%s", res.code, tt.wantCode, res.stdout, res.stderr)
			}
			checkCalls(t, fx.recorded(), tt.wantCalls)
			if tt.wantOut != nil && res.stdout != *tt.wantOut {
				t.Errorf("stdout:\n%s\nwant:\n%s", res.stdout, *tt.wantOut)
			}
			for _, s := range tt.outHas {
				if !strings.Contains(res.stdout, s) {
					t.Errorf("stdout lacks %q:\n%s", s, res.stdout)
				}
			}
			for _, s := range tt.errHas {
				if !strings.Contains(res.stderr, s) {
					t.Errorf("stderr lacks %q:\n%s", s, res.stderr)
				}
			}
			if tt.wantCode == 0 && res.stderr != "" {
				t.Errorf("unexpected stderr:\n%s", res.stderr)
			}
		})
	}
}

func TestTagCommands(t *testing.T) {
	const clusterArn = "arn:aws:ecs:local:000000000000:cluster/prod"
	tags := []*orchv1.Tag{{Key: "team", Value: "web"}, {Key: "note"}}
	runUnaryCases(t, []unaryCase{
		{
			name: "tag-resource",
			args: []string{"tag-resource", "--resource-arn", clusterArn, "--tags", "key=team,value=web", "key=env,value=prod"},
			wantCalls: []call{{"TagResource", &orchv1.TagResourceRequest{ResourceArn: clusterArn,
				Tags: []*orchv1.Tag{{Key: "team", Value: "web"}, {Key: "env", Value: "prod"}}}}},
			wantOut: str(""),
		},
		{
			name: "tag-resource json list",
			args: []string{"tag-resource", "--resource-arn", tdArn, "--tags", `[{"key":"owner","value":"ops, oncall"}]`, "-o", "json"},
			wantCalls: []call{{"TagResource", &orchv1.TagResourceRequest{ResourceArn: tdArn,
				Tags: []*orchv1.Tag{{Key: "owner", Value: "ops, oncall"}}}}},
			wantOut: str(""),
		},
		{
			name:     "tag-resource without tags",
			args:     []string{"tag-resource", "--resource-arn", clusterArn},
			wantCode: 252,
			errHas:   []string{`required flag(s) "tags" not set`, "See 'orchctl tag-resource --help'."},
		},
		{
			name:     "tag-resource without arn",
			args:     []string{"tag-resource", "--tags", "key=a,value=b"},
			wantCode: 252,
			errHas:   []string{`required flag(s) "resource-arn" not set`},
		},
		{
			name:     "tag-resource bad shorthand",
			args:     []string{"tag-resource", "--resource-arn", clusterArn, "--tags", "team=web"},
			wantCode: 252,
			errHas:   []string{`argument --tags: expected key=K,value=V, got "team=web"`},
		},
		{
			name:      "tag-resource unknown resource",
			args:      []string{"tag-resource", "--resource-arn", clusterArn, "--tags", "key=a,value=b"},
			errs:      map[string]error{"TagResource": status.Error(codes.NotFound, "resource "+clusterArn+": not found")},
			wantCalls: []call{{"TagResource", &orchv1.TagResourceRequest{ResourceArn: clusterArn, Tags: []*orchv1.Tag{{Key: "a", Value: "b"}}}}},
			wantCode:  254,
			errHas:    []string{"An error occurred (NotFound) when calling the TagResource operation: resource " + clusterArn + ": not found\n"},
		},
		{
			name:      "untag-resource",
			args:      []string{"untag-resource", "--resource-arn", clusterArn, "--tag-keys", "team", "env"},
			wantCalls: []call{{"UntagResource", &orchv1.UntagResourceRequest{ResourceArn: clusterArn, TagKeys: []string{"team", "env"}}}},
			wantOut:   str(""),
		},
		{
			name:      "untag-resource comma separated",
			args:      []string{"untag-resource", "--resource-arn", clusterArn, "--tag-keys", "team,env"},
			wantCalls: []call{{"UntagResource", &orchv1.UntagResourceRequest{ResourceArn: clusterArn, TagKeys: []string{"team", "env"}}}},
			wantOut:   str(""),
		},
		{
			name:      "untag-resource reserved key",
			args:      []string{"untag-resource", "--resource-arn", clusterArn, "--tag-keys", "aws:x"},
			errs:      map[string]error{"UntagResource": status.Error(codes.InvalidArgument, "tagKeys[0]: \"aws:x\": keys starting with aws: are reserved")},
			wantCalls: []call{{"UntagResource", &orchv1.UntagResourceRequest{ResourceArn: clusterArn, TagKeys: []string{"aws:x"}}}},
			wantCode:  254,
			errHas:    []string{"An error occurred (InvalidArgument) when calling the UntagResource operation: tagKeys[0]"},
		},
		{
			name:     "untag-resource without keys",
			args:     []string{"untag-resource", "--resource-arn", clusterArn},
			wantCode: 252,
			errHas:   []string{`required flag(s) "tag-keys" not set`},
		},
		{
			name:      "list-tags-for-resource",
			args:      []string{"list-tags-for-resource", "--resource-arn", clusterArn},
			responses: map[string]proto.Message{"ListTagsForResource": &orchv1.ListTagsForResourceResponse{Tags: tags}},
			wantCalls: []call{{"ListTagsForResource", &orchv1.ListTagsForResourceRequest{ResourceArn: clusterArn}}},
			wantOut:   str("KEY   VALUE\nteam  web\nnote  -\n"),
		},
		{
			name:      "list-tags-for-resource consistent json",
			args:      []string{"list-tags-for-resource", "--resource-arn", clusterArn, "--consistent", "-o", "json"},
			responses: map[string]proto.Message{"ListTagsForResource": &orchv1.ListTagsForResourceResponse{Tags: tags[:1]}},
			wantCalls: []call{{"ListTagsForResource", &orchv1.ListTagsForResourceRequest{ResourceArn: clusterArn, Consistent: true}}},
			wantOut:   str("{\n  \"tags\": [\n    {\n      \"key\": \"team\",\n      \"value\": \"web\"\n    }\n  ]\n}\n"),
		},
		{
			name:      "list-tags-for-resource none json",
			args:      []string{"list-tags-for-resource", "--resource-arn", clusterArn, "-o", "json"},
			wantCalls: []call{{"ListTagsForResource", &orchv1.ListTagsForResourceRequest{ResourceArn: clusterArn}}},
			wantOut:   str("{\n  \"tags\": []\n}\n"),
		},
		{
			name:      "list-tags-for-resource not the leader",
			args:      []string{"list-tags-for-resource", "--resource-arn", clusterArn, "--consistent"},
			errs:      map[string]error{"ListTagsForResource": status.Error(codes.Unavailable, "not the leader")},
			wantCalls: []call{{"ListTagsForResource", &orchv1.ListTagsForResourceRequest{ResourceArn: clusterArn, Consistent: true}}},
			wantCode:  254,
			errHas:    []string{"An error occurred (Unavailable) when calling the ListTagsForResource operation: not the leader"},
		},
		{
			name:     "list-tags-for-resource stray argument",
			args:     []string{"list-tags-for-resource", "--resource-arn", clusterArn, "extra"},
			wantCode: 252,
			errHas:   []string{`unknown command "extra"`},
		},
	})
}
