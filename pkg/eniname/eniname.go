// Package eniname derives the names of a task's network pieces from its id and cluster, so that
// the scheduler (which records them in the task's ENI attachment) and the agent (which creates
// them, and finds them again after a restart) agree without talking.
package eniname

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
)

func short(taskID string) string {
	if len(taskID) > 12 {
		return taskID[:12]
	}
	return taskID
}

// NetNS is the task's named network namespace: "orch-" + 12 hex chars of the task id.
func NetNS(taskID string) string { return "orch-" + short(taskID) }

// HostVeth is the host end of the task's veth: "ve" + 12 hex chars (<= 15 bytes, IFNAMSIZ).
func HostVeth(taskID string) string { return "ve" + short(taskID) }

// Bridge is a cluster's bridge on every host: "orch" + 8 hex chars of a hash of its name.
func Bridge(cluster string) string {
	sum := sha256.Sum256([]byte(cluster))
	return "orch" + hex.EncodeToString(sum[:4])
}

// MAC is a locally administered unicast address derived from the task id.
func MAC(taskID string) string {
	sum := sha256.Sum256([]byte(taskID))
	return fmt.Sprintf("02:%02x:%02x:%02x:%02x:%02x", sum[0], sum[1], sum[2], sum[3], sum[4])
}

// ENI is the id shown as the attachment's networkInterfaceId: "eni-" + 17 hex chars, as in AWS.
func ENI(taskID string) string {
	if len(taskID) > 17 {
		return "eni-" + taskID[:17]
	}
	return "eni-" + taskID
}
