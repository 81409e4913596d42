package taskdef

import (
	"google.golang.org/protobuf/proto"

	orchv1 "orch/proto/orch/v1"
)

// ApplyOverrides returns a copy of td with run-task overrides merged in, as ECS applies them:
// a container override's command replaces the container's command, its environment entries are
// added to (and win over) the definition's, and cpu/memory/memoryReservation replace the
// container's; task-level cpu/memory overrides replace the task's. td is not changed.
func ApplyOverrides(td *orchv1.TaskDefinition, ov *orchv1.TaskOverride) *orchv1.TaskDefinition {
	out := proto.Clone(td).(*orchv1.TaskDefinition)
	if ov == nil {
		return out
	}
	if ov.GetCpu() != "" {
		out.Cpu = ov.GetCpu()
	}
	if ov.GetMemory() != "" {
		out.Memory = ov.GetMemory()
	}
	if ov.GetTaskRoleArn() != "" {
		out.TaskRoleArn = ov.GetTaskRoleArn()
	}
	if ov.GetExecutionRoleArn() != "" {
		out.ExecutionRoleArn = ov.GetExecutionRoleArn()
	}
	for _, co := range ov.GetContainerOverrides() {
		for _, c := range out.GetContainerDefinitions() {
			if c.GetName() != co.GetName() {
				continue
			}
			if len(co.GetCommand()) > 0 {
				c.Command = co.GetCommand()
			}
			c.Environment = mergeEnv(c.GetEnvironment(), co.GetEnvironment())
			if co.Cpu != nil {
				c.Cpu = co.GetCpu()
			}
			if co.Memory != nil {
				c.Memory = proto.Int32(co.GetMemory())
			}
			if co.MemoryReservation != nil {
				c.MemoryReservation = proto.Int32(co.GetMemoryReservation())
			}
		}
	}
	return out
}

func mergeEnv(base, extra []*orchv1.KeyValuePair) []*orchv1.KeyValuePair {
	if len(extra) == 0 {
		return base
	}
	idx := map[string]int{}
	out := make([]*orchv1.KeyValuePair, 0, len(base)+len(extra))
	for _, kv := range base {
		idx[kv.GetName()] = len(out)
		out = append(out, kv)
	}
	for _, kv := range extra {
		if i, ok := idx[kv.GetName()]; ok {
			out[i] = kv
			continue
		}
		idx[kv.GetName()] = len(out)
		out = append(out, kv)
	}
	return out
}
