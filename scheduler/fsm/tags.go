package fsm

// Tagging, as ECS's TagResource and UntagResource: tags live on the objects themselves (the
// `tags` field of Cluster, TaskDefinition and Task), named by the resource's ARN. Each change is
// one Raft entry that adds or replaces some keys and removes others; the per-resource limit is
// checked here, against the state the entry applies to, so that two concurrent TagResource
// calls can never leave a resource above it.

import (
	"fmt"
	"strconv"
	"strings"

	"google.golang.org/protobuf/proto"

	"orch/pkg/arn"
	orchv1 "orch/proto/orch/v1"
	"orch/scheduler/state"
)

// MaxTagsPerResource is ECS's limit on the tags of one resource.
const MaxTagsPerResource = 50

// Kinds of taggable resources, as the type segment of their ARN.
const (
	KindCluster        = "cluster"
	KindTaskDefinition = "task-definition"
	KindTask           = "task"
	KindService        = "service"
)

// ResourceRef is a taggable resource named by an ARN.
type ResourceRef struct {
	ARN      string
	Kind     string // KindCluster, KindTaskDefinition, KindTask or KindService
	Cluster  string // clusters, tasks and services
	Service  string // services
	Family   string // task definitions
	Revision int32  // task definitions
	TaskID   string // tasks
}

// ParseResourceARN reads the ARN of a cluster (arn:...:cluster/NAME), a task definition
// (arn:...:task-definition/FAMILY:REVISION), a task (arn:...:task/CLUSTER/ID) or a service
// (arn:...:service/CLUSTER/NAME). A malformed
// ARN, or one of a resource orch cannot tag, is an error wrapping state.ErrInvalid.
func ParseResourceARN(s string) (ResourceRef, error) {
	ref := ResourceRef{ARN: s}
	bad := func(why string) (ResourceRef, error) {
		return ResourceRef{}, fmt.Errorf("resource ARN %q: %s: %w", s, why, state.ErrInvalid)
	}
	// arn:<partition>:ecs:<region>:<account>:<type>/<path>
	parts := strings.SplitN(s, ":", 6)
	if len(parts) != 6 || parts[0] != "arn" || parts[1] == "" || parts[3] == "" || parts[4] == "" {
		return bad("not an ARN (want arn:aws:ecs:REGION:ACCOUNT:TYPE/NAME)")
	}
	if parts[2] != "ecs" {
		return bad(fmt.Sprintf("service %q is not ecs", parts[2]))
	}
	kind, path, ok := strings.Cut(parts[5], "/")
	if !ok || path == "" {
		return bad("no resource type and name after the account (want TYPE/NAME)")
	}
	ref.Kind = kind
	switch kind {
	case KindCluster:
		if !validName(path) {
			return bad("cluster name must be 1-255 letters, digits, hyphens or underscores")
		}
		ref.Cluster = path
	case KindTaskDefinition:
		family, rev, ok := strings.Cut(path, ":")
		n, err := strconv.ParseInt(rev, 10, 32)
		if !ok || !validName(family) || err != nil || n < 1 {
			return bad("want task-definition/FAMILY:REVISION with a positive revision")
		}
		ref.Family, ref.Revision = family, int32(n)
	case KindTask:
		cluster, id, ok := strings.Cut(path, "/")
		if !ok || !validName(cluster) || id == "" || strings.Contains(id, "/") {
			return bad("want task/CLUSTER/ID")
		}
		ref.Cluster, ref.TaskID = cluster, id
	case KindService:
		cluster, name, ok := strings.Cut(path, "/")
		if !ok || !validName(cluster) || !validName(name) {
			return bad("want service/CLUSTER/NAME")
		}
		ref.Cluster, ref.Service = cluster, name
	case "container-instance", "capacity-provider", "task-set":
		return bad("orch cannot tag " + kind + " resources yet (only clusters, task definitions, tasks and services)")
	default:
		return bad(fmt.Sprintf("unknown resource type %q (want cluster, task-definition, task or service)", kind))
	}
	return ref, nil
}

func validName(s string) bool {
	if len(s) == 0 || len(s) > 255 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// lookupResource returns the stored object named by ref: a *orchv1.Cluster, *TaskDefinition or
// *Task. A resource that does not exist (or a deleted cluster) is an error wrapping
// state.ErrNotFound that names the ARN. The object's own ARN must be the one asked for, so an
// ARN of another region or account does not name a local object.
func lookupResource(r *state.ReadTxn, arns arn.Builder, ref ResourceRef) (proto.Message, error) {
	notFound := fmt.Errorf("resource %s: %w", ref.ARN, state.ErrNotFound)
	switch ref.Kind {
	case KindCluster:
		c, err := r.Cluster(nil, ref.Cluster)
		if err != nil {
			return nil, err
		}
		if c == nil || c.GetStatus() != "ACTIVE" || c.GetClusterArn() != ref.ARN {
			return nil, notFound
		}
		return c, nil
	case KindTaskDefinition:
		td, err := r.TaskDefinition(nil, ref.Family, ref.Revision)
		if err != nil {
			return nil, err
		}
		if td == nil || td.GetTaskDefinitionArn() != ref.ARN {
			return nil, notFound
		}
		return td, nil
	case KindTask:
		t, err := r.Task(nil, ref.TaskID)
		if err != nil {
			return nil, err
		}
		if t == nil || t.GetCluster() != ref.Cluster || arns.Task(t.GetCluster(), t.GetId()) != ref.ARN {
			return nil, notFound
		}
		return t, nil
	case KindService:
		svc, err := r.Service(nil, ref.Cluster, ref.Service)
		if err != nil {
			return nil, err
		}
		if svc == nil || svc.GetStatus() == "INACTIVE" || svc.GetServiceArn() != ref.ARN {
			return nil, notFound
		}
		return svc, nil
	}
	return nil, fmt.Errorf("resource %s: kind %q: %w", ref.ARN, ref.Kind, state.ErrInvalid)
}

// ResourceTags returns the tags of the resource named by resourceARN as r sees it: an error
// wrapping state.ErrInvalid for a malformed ARN, state.ErrNotFound for an unknown resource.
func ResourceTags(r *state.ReadTxn, arns arn.Builder, resourceARN string) ([]*orchv1.Tag, error) {
	ref, err := ParseResourceARN(resourceARN)
	if err != nil {
		return nil, err
	}
	obj, err := lookupResource(r, arns, ref)
	if err != nil {
		return nil, err
	}
	return tagsOf(obj), nil
}

func tagsOf(obj proto.Message) []*orchv1.Tag {
	switch o := obj.(type) {
	case *orchv1.Cluster:
		return o.GetTags()
	case *orchv1.TaskDefinition:
		return o.GetTags()
	case *orchv1.Task:
		return o.GetTags()
	case *orchv1.Service:
		return o.GetTags()
	}
	return nil
}

// MergeTags returns tags with set added or replacing the values of the same keys (new keys
// keep their order at the end) and the keys in unset removed; keys in unset that are absent
// are ignored, as ECS does. tags is not modified.
func MergeTags(tags, set []*orchv1.Tag, unset []string) []*orchv1.Tag {
	out := make([]*orchv1.Tag, 0, len(tags)+len(set))
	at := make(map[string]int, len(tags)+len(set))
	for _, t := range tags {
		if i, ok := at[t.GetKey()]; ok {
			out[i] = t
			continue
		}
		at[t.GetKey()] = len(out)
		out = append(out, t)
	}
	for _, t := range set {
		t = &orchv1.Tag{Key: t.GetKey(), Value: t.GetValue()}
		if i, ok := at[t.GetKey()]; ok {
			out[i] = t
			continue
		}
		at[t.GetKey()] = len(out)
		out = append(out, t)
	}
	if len(unset) == 0 {
		return out
	}
	drop := make(map[string]bool, len(unset))
	for _, k := range unset {
		drop[k] = true
	}
	kept := out[:0]
	for _, t := range out {
		if !drop[t.GetKey()] {
			kept = append(kept, t)
		}
	}
	return kept
}

// applyTagResource adds, replaces and removes tags of one resource; it returns the resource's
// tags after the change. A change that would leave more than MaxTagsPerResource tags is refused
// whole.
func applyTagResource(f *FSM, w *state.WriteTxn, buf []byte) (any, error) {
	var cmd orchv1.TagResourceCommand
	decode(buf, &cmd)
	ref, err := ParseResourceARN(cmd.GetResourceArn())
	if err != nil {
		return nil, err
	}
	obj, err := lookupResource(&w.ReadTxn, f.arns, ref)
	if err != nil {
		return nil, err
	}
	tags := MergeTags(tagsOf(obj), cmd.GetTags(), cmd.GetUntag())
	if len(tags) > MaxTagsPerResource {
		return nil, fmt.Errorf("resource %s: would have %d tags, at most %d are allowed: %w",
			ref.ARN, len(tags), MaxTagsPerResource, state.ErrInvalid)
	}
	switch o := proto.Clone(obj).(type) {
	case *orchv1.Cluster:
		o.Tags = tags
		err = w.PutCluster(o)
	case *orchv1.TaskDefinition:
		o.Tags = tags
		err = w.PutTaskDefinition(o)
	case *orchv1.Task:
		o.Tags = tags
		err = w.PutTask(o)
	case *orchv1.Service:
		o.Tags = tags
		o.ModifyIndex = w.Index() // the service controller's compare-and-set sees the change
		err = w.PutService(o)
	}
	if err != nil {
		return nil, fmt.Errorf("resource %s: %w", ref.ARN, err)
	}
	return tags, nil
}
