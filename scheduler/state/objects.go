package state

import (
	"encoding/hex"
	"fmt"
	"sort"

	"orch/pkg/lifecycle"
	orchv1 "orch/proto/orch/v1"
)

// Cluster returns the named cluster, or nil.
func (r *ReadTxn) Cluster(ws WatchSet, name string) (*orchv1.Cluster, error) {
	return first[*orchv1.Cluster](r, ws, TableClusters, "id", name)
}

// Clusters returns every cluster, by name.
func (r *ReadTxn) Clusters(ws WatchSet) ([]*orchv1.Cluster, error) {
	return list[*orchv1.Cluster](r, ws, TableClusters, "id")
}

// Host returns the host with the id, or nil.
func (r *ReadTxn) Host(ws WatchSet, id string) (*orchv1.Host, error) {
	return first[*orchv1.Host](r, ws, TableHosts, "id", id)
}

// Hosts returns every host.
func (r *ReadTxn) Hosts(ws WatchSet) ([]*orchv1.Host, error) {
	return list[*orchv1.Host](r, ws, TableHosts, "id")
}

// Instance returns the container instance with the id, or nil.
func (r *ReadTxn) Instance(ws WatchSet, id string) (*orchv1.ContainerInstance, error) {
	return first[*orchv1.ContainerInstance](r, ws, TableInstances, "id", id)
}

// InstancesByCluster returns the cluster's container instances.
func (r *ReadTxn) InstancesByCluster(ws WatchSet, cluster string) ([]*orchv1.ContainerInstance, error) {
	return list[*orchv1.ContainerInstance](r, ws, TableInstances, "cluster", cluster)
}

// HighestSubnet returns the subnet of the cluster's container instance with the highest
// subnet address, or "" when the cluster has none.
func (r *ReadTxn) HighestSubnet(cluster string) (string, error) {
	it, err := r.txn.GetReverse(TableInstances, "subnet_prefix", cluster+"\x00")
	if err != nil {
		return "", fmt.Errorf("state: %s by subnet: %w", TableInstances, err)
	}
	raw := it.Next()
	if raw == nil {
		return "", nil
	}
	return raw.(*orchv1.ContainerInstance).GetSubnet(), nil
}

// InstancesByHost returns the host's container instances, one per cluster it serves.
func (r *ReadTxn) InstancesByHost(ws WatchSet, host string) ([]*orchv1.ContainerInstance, error) {
	return list[*orchv1.ContainerInstance](r, ws, TableInstances, "host", host)
}

// TaskDefinition returns family:revision, or with revision 0 the latest ACTIVE revision; nil
// when there is none.
func (r *ReadTxn) TaskDefinition(ws WatchSet, family string, revision int32) (*orchv1.TaskDefinition, error) {
	if revision > 0 {
		return first[*orchv1.TaskDefinition](r, ws, TableTaskDefs, "id", taskDefKey(family, revision))
	}
	revs, err := r.TaskDefinitionsByFamily(ws, family)
	if err != nil {
		return nil, err
	}
	for i := len(revs) - 1; i >= 0; i-- {
		if revs[i].GetStatus() == "ACTIVE" {
			return revs[i], nil
		}
	}
	return nil, nil
}

// TaskDefinitionsByFamily returns every revision of family, oldest first.
func (r *ReadTxn) TaskDefinitionsByFamily(ws WatchSet, family string) ([]*orchv1.TaskDefinition, error) {
	return list[*orchv1.TaskDefinition](r, ws, TableTaskDefs, "family", family)
}

// LatestRevision returns the highest revision ever registered in family (0 if none).
func (r *ReadTxn) LatestRevision(family string) (int32, error) {
	revs, err := r.TaskDefinitionsByFamily(nil, family)
	if err != nil || len(revs) == 0 {
		return 0, err
	}
	return revs[len(revs)-1].GetRevision(), nil
}

// TaskDefinitions returns every revision of every family, by family then revision.
func (r *ReadTxn) TaskDefinitions(ws WatchSet) ([]*orchv1.TaskDefinition, error) {
	return list[*orchv1.TaskDefinition](r, ws, TableTaskDefs, "id")
}

// Task returns the task with the id, or nil.
func (r *ReadTxn) Task(ws WatchSet, id string) (*orchv1.Task, error) {
	return first[*orchv1.Task](r, ws, TableTasks, "id", id)
}

// Tasks returns every task.
func (r *ReadTxn) Tasks(ws WatchSet) ([]*orchv1.Task, error) {
	return list[*orchv1.Task](r, ws, TableTasks, "id")
}

// TasksByCluster returns the cluster's tasks, oldest first. Tasks are found through the
// cluster's container instances, which are deleted only with the cluster (DeleteCluster, once
// every task has stopped).
func (r *ReadTxn) TasksByCluster(cluster string) ([]*orchv1.Task, error) {
	instances, err := r.InstancesByCluster(nil, cluster)
	if err != nil {
		return nil, err
	}
	tasks, err := r.tasksOf(instances)
	sortByCreation(tasks)
	return tasks, err
}

// TasksByHost returns the tasks placed on a host, in every cluster (through the host's
// container instances, one per cluster).
func (r *ReadTxn) TasksByHost(host string) ([]*orchv1.Task, error) {
	instances, err := r.InstancesByHost(nil, host)
	if err != nil {
		return nil, err
	}
	return r.tasksOf(instances)
}

func (r *ReadTxn) tasksOf(instances []*orchv1.ContainerInstance) ([]*orchv1.Task, error) {
	var out []*orchv1.Task
	for _, ci := range instances {
		tasks, err := r.TasksByInstance(ci.GetId())
		if err != nil {
			return nil, err
		}
		out = append(out, tasks...)
	}
	return out, nil
}

// TasksByInstance returns the tasks placed on a container instance.
func (r *ReadTxn) TasksByInstance(instance string) ([]*orchv1.Task, error) {
	return list[*orchv1.Task](r, nil, TableTasks, "instance", instance)
}

func sortByCreation(tasks []*orchv1.Task) {
	sort.SliceStable(tasks, func(i, j int) bool {
		a, b := tasks[i].GetCreatedAt().AsTime(), tasks[j].GetCreatedAt().AsTime()
		if a.Equal(b) {
			return tasks[i].GetId() < tasks[j].GetId()
		}
		return a.Before(b)
	})
}

// PutCluster inserts or replaces a cluster.
func (w *WriteTxn) PutCluster(c *orchv1.Cluster) error { return w.insert(TableClusters, c) }

// DeleteCluster removes a cluster.
func (w *WriteTxn) DeleteCluster(c *orchv1.Cluster) error { return w.delete(TableClusters, c) }

// PutHost inserts or replaces a host.
func (w *WriteTxn) PutHost(h *orchv1.Host) error { return w.insert(TableHosts, h) }

// PutInstance inserts or replaces a container instance.
func (w *WriteTxn) PutInstance(c *orchv1.ContainerInstance) error {
	return w.insert(TableInstances, c)
}

// DeleteInstance removes a container instance.
func (w *WriteTxn) DeleteInstance(c *orchv1.ContainerInstance) error {
	return w.delete(TableInstances, c)
}

// PutTaskDefinition inserts or replaces a task definition revision.
func (w *WriteTxn) PutTaskDefinition(t *orchv1.TaskDefinition) error {
	return w.insert(TableTaskDefs, t)
}

// Task returns the task with the id as this transaction left it, or nil (see WriteTxn). ws is
// not used: nothing waits inside a write.
func (w *WriteTxn) Task(ws WatchSet, id string) (*orchv1.Task, error) {
	if t, ok := w.tasks[id]; ok {
		return t, nil
	}
	return w.committed[id], nil
}

// PutTask inserts or replaces a task, stamping its modify index.
func (w *WriteTxn) PutTask(t *orchv1.Task) error {
	t.ModifyIndex = w.index
	if old, _ := w.Task(nil, t.GetId()); hostSees(old, t) {
		w.touchHost(t.GetHostId())
	}
	if err := w.insert(TableTasks, t); err != nil {
		return err
	}
	w.wroteTask(t.GetId(), t)
	return nil
}

// DeleteTask removes a task.
func (w *WriteTxn) DeleteTask(t *orchv1.Task) error {
	w.touchHost(t.GetHostId())
	if err := w.delete(TableTasks, t); err != nil {
		return err
	}
	w.wroteTask(t.GetId(), nil)
	return nil
}

// hostSees reports whether replacing old (nil: none) with t changes what the watchers of its
// host act on (HostWatch, TrackHosts): the host's set of tasks, what it is told to run (the
// desired status), and what its tasks hold (a task holds its resources until it is STOPPED,
// and its address until then or while eniHeld). An agent's status report that only moves a
// task along (PENDING to RUNNING, timestamps, containers) or its usage changes none of it: at
// 10,000 hosts those reports woke the host's session and the planner's usage of the host for
// nothing. A task's host is fixed when it is placed.
func hostSees(old, t *orchv1.Task) bool {
	stopped := lifecycle.Stopped
	return old == nil || old.GetDesiredStatus() != t.GetDesiredStatus() ||
		(old.GetLastStatus() == stopped) != (t.GetLastStatus() == stopped) || old.GetEniHeld() != t.GetEniHeld()
}

func (w *WriteTxn) wroteTask(id string, t *orchv1.Task) {
	if w.tasks == nil {
		w.tasks = map[string]*orchv1.Task{}
	}
	w.tasks[id] = t
}

// Server returns the scheduler with the id, or nil.
func (r *ReadTxn) Server(ws WatchSet, id string) (*orchv1.SchedulerServer, error) {
	return first[*orchv1.SchedulerServer](r, ws, TableServers, "id", id)
}

// Servers returns every scheduler that has registered its addresses.
func (r *ReadTxn) Servers(ws WatchSet) ([]*orchv1.SchedulerServer, error) {
	return list[*orchv1.SchedulerServer](r, ws, TableServers, "id")
}

// PutServer inserts or replaces a scheduler's addresses.
func (w *WriteTxn) PutServer(s *orchv1.SchedulerServer) error { return w.insert(TableServers, s) }

// DeleteServer removes a scheduler.
func (w *WriteTxn) DeleteServer(s *orchv1.SchedulerServer) error { return w.delete(TableServers, s) }

// TokenBySecretHash returns the API token whose secret hashes to hash, or nil.
func (r *ReadTxn) TokenBySecretHash(hash []byte) (*orchv1.APIToken, error) {
	return first[*orchv1.APIToken](r, nil, TableTokens, "secret", hex.EncodeToString(hash))
}

// Tokens returns every API token.
func (r *ReadTxn) Tokens(ws WatchSet) ([]*orchv1.APIToken, error) {
	return list[*orchv1.APIToken](r, ws, TableTokens, "id")
}

// PutToken inserts or replaces an API token.
func (w *WriteTxn) PutToken(t *orchv1.APIToken) error { return w.insert(TableTokens, t) }

// PKI returns the cluster CA and join tokens, or nil before the cluster has them.
func (r *ReadTxn) PKI(ws WatchSet) (*orchv1.ClusterPKI, error) {
	return first[*orchv1.ClusterPKI](r, ws, TablePKI, "id", pkiKey)
}

// PutPKI replaces the cluster CA and join tokens.
func (w *WriteTxn) PutPKI(p *orchv1.ClusterPKI) error { return w.insert(TablePKI, p) }

// TasksByService returns the tasks of a service of cluster (group "service:<name>").
func (r *ReadTxn) TasksByService(ws WatchSet, cluster, service string) ([]*orchv1.Task, error) {
	return list[*orchv1.Task](r, ws, TableTasks, "service", serviceKey(cluster, service))
}

// Service returns a service of cluster by name, or nil.
func (r *ReadTxn) Service(ws WatchSet, cluster, name string) (*orchv1.Service, error) {
	return first[*orchv1.Service](r, ws, TableServices, "id", serviceKey(cluster, name))
}

// ServicesByCluster returns the services of cluster, by name.
func (r *ReadTxn) ServicesByCluster(ws WatchSet, cluster string) ([]*orchv1.Service, error) {
	return list[*orchv1.Service](r, ws, TableServices, "cluster", cluster)
}

// Services returns every service.
func (r *ReadTxn) Services(ws WatchSet) ([]*orchv1.Service, error) {
	return list[*orchv1.Service](r, ws, TableServices, "id")
}

// PutService inserts or replaces a service.
func (w *WriteTxn) PutService(s *orchv1.Service) error { return w.insert(TableServices, s) }

// DeleteService removes a service.
func (w *WriteTxn) DeleteService(s *orchv1.Service) error { return w.delete(TableServices, s) }
