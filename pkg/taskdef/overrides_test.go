package taskdef

import (
	"testing"

	"google.golang.org/protobuf/proto"

	orchv1 "orch/proto/orch/v1"
)

func TestApplyOverrides(t *testing.T) {
	td := &orchv1.TaskDefinition{Family: "web", ContainerDefinitions: []*orchv1.ContainerDefinition{{
		Name: "web", Command: []string{"a"}, Memory: proto.Int32(128),
		Environment: []*orchv1.KeyValuePair{{Name: "A", Value: "1"}, {Name: "B", Value: "2"}},
	}}}
	ov := &orchv1.TaskOverride{Memory: "1024", ContainerOverrides: []*orchv1.ContainerOverride{{
		Name: "web", Command: []string{"b", "c"}, Memory: proto.Int32(256),
		Environment: []*orchv1.KeyValuePair{{Name: "B", Value: "3"}, {Name: "C", Value: "4"}},
	}}}
	got := ApplyOverrides(td, ov)
	c := got.GetContainerDefinitions()[0]
	if got.GetMemory() != "1024" || c.GetMemory() != 256 || len(c.GetCommand()) != 2 {
		t.Fatalf("overrides not applied: %v", got)
	}
	env := map[string]string{}
	for _, kv := range c.GetEnvironment() {
		env[kv.GetName()] = kv.GetValue()
	}
	if env["A"] != "1" || env["B"] != "3" || env["C"] != "4" || len(env) != 3 {
		t.Fatalf("environment = %v", env)
	}
	if td.GetContainerDefinitions()[0].GetMemory() != 128 || td.GetMemory() != "" {
		t.Fatal("the definition must not change")
	}
}
