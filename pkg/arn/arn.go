// Package arn builds and reads orch's ECS-style resource names:
// arn:aws:ecs:<region>:<account>:<type>/<path>.
package arn

import (
	"fmt"
	"strings"
)

// Defaults for region and account, as DESIGN.md sets them.
const (
	DefaultRegion  = "local"
	DefaultAccount = "000000000000"
)

// Builder makes ARNs for one region and account.
type Builder struct{ Region, Account string }

// Default is the builder for the default region and account.
var Default = Builder{Region: DefaultRegion, Account: DefaultAccount}

func (b Builder) prefix() string { return "arn:aws:ecs:" + b.Region + ":" + b.Account + ":" }

// Cluster is arn:...:cluster/<name>.
func (b Builder) Cluster(name string) string { return b.prefix() + "cluster/" + name }

// TaskDefinition is arn:...:task-definition/<family>:<revision>.
func (b Builder) TaskDefinition(family string, revision int32) string {
	return fmt.Sprintf("%stask-definition/%s:%d", b.prefix(), family, revision)
}

// Task is arn:...:task/<cluster>/<id>.
func (b Builder) Task(cluster, id string) string { return b.prefix() + "task/" + cluster + "/" + id }

// ContainerInstance is arn:...:container-instance/<cluster>/<id>.
func (b Builder) ContainerInstance(cluster, id string) string {
	return b.prefix() + "container-instance/" + cluster + "/" + id
}

// Service is arn:...:service/<cluster>/<name> (ECS's long ARN format).
func (b Builder) Service(cluster, name string) string {
	return b.prefix() + "service/" + cluster + "/" + name
}

// Container is arn:...:container/<cluster>/<task id>/<name>.
func (b Builder) Container(cluster, taskID, name string) string {
	return b.prefix() + "container/" + cluster + "/" + taskID + "/" + name
}

// LastSegment returns what follows the last "/" of an ARN, or s itself when it is not an ARN:
// the id of a task or container instance, the name of a cluster.
func LastSegment(s string) string {
	if !strings.HasPrefix(s, "arn:") {
		return s
	}
	if i := strings.LastIndexByte(s, '/'); i >= 0 {
		return s[i+1:]
	}
	return s
}

// ClusterName returns the cluster name from a cluster name or cluster ARN.
func ClusterName(s string) string { return LastSegment(s) }
