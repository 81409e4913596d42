package e2e

import (
	"slices"
	"strings"
	"testing"

	orchv1 "orch/proto/orch/v1"
)

// TestInvalidTaskDefinitions checks that orchctl refuses broken task definitions with a usage
// error (exit 252) that points at the field, and that none of them is registered.
func TestInvalidTaskDefinitions(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.registerTaskDef(`{"family": "good", "memory": "64", "containerDefinitions": [{"name": "main", "image": "%BUSYBOX%"}]}`)
	listAll := func() []string {
		var resp orchv1.ListTaskDefinitionsResponse
		e.orchctlJSON(&resp, "list-task-definitions", "--status", "ALL")
		return resp.GetTaskDefinitionArns()
	}
	before := listAll()
	if len(before) != 1 || !strings.HasSuffix(before[0], "task-definition/good:1") {
		t.Fatalf("list-task-definitions: %v, want good:1 alone", before)
	}

	tests := []struct {
		name string
		json string
		want []string // in stderr
	}{
		{
			name: "malformed JSON",
			json: `{"family": "bad", "containerDefinitions": [`,
			want: []string{"--cli-input-json", "line 1, column"},
		},
		{
			name: "missing image",
			json: `{"family": "bad", "memory": "64", "containerDefinitions": [{"name": "main"}]}`,
			want: []string{"containerDefinitions[0].image", "required"},
		},
		{
			name: "memory below memoryReservation",
			json: `{"family": "bad", "containerDefinitions": [{"name": "main", "image": "busybox", "memory": 64, "memoryReservation": 128}]}`,
			want: []string{"containerDefinitions[0].memory", "memoryReservation"},
		},
		{
			name: "unknown field",
			json: `{"family": "bad", "memory": "64", "containerDefinitions": [{"name": "main", "image": "busybox", "imageName": "busybox"}]}`,
			want: []string{"containerDefinitions[0].imageName", "unknown field"},
		},
		{
			name: "second container missing image",
			json: `{"family": "bad", "memory": "64", "containerDefinitions": [{"name": "a", "image": "busybox"}, {"name": "b"}]}`,
			want: []string{"containerDefinitions[1].image"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := e.on(t)
			p := e.writeFile("taskdef.json", tt.json)
			r := e.orchctl("register-task-definition", "--cli-input-json", "file://"+p)
			if r.code != 252 {
				t.Errorf("exit code %d, want 252 (usage error): %s", r.code, r)
			}
			for _, w := range tt.want {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("stderr does not name %q: %s", w, r)
				}
			}
			if r.stdout != "" {
				t.Errorf("stdout not empty: %s", r)
			}
		})
	}
	if after := listAll(); !slices.Equal(after, before) {
		t.Errorf("list-task-definitions changed: before %v, after %v", before, after)
	}
}
