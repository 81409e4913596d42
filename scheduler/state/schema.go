// Package state owns the scheduler's replicated state: go-memdb tables of proto objects
// (clusters, hosts, container instances, task definitions, tasks), with the indexes the API and
// the leader loops read by, and watch channels for blocking reads. Only the FSM writes to it.
// Objects read from the store are shared and immutable: clone before changing.
package state

import (
	"encoding/hex"
	"fmt"
	"net/netip"
	"strings"

	"github.com/hashicorp/go-memdb"
	"google.golang.org/protobuf/proto"

	orchv1 "orch/proto/orch/v1"
)

// Table names.
const (
	TableClusters  = "clusters"
	TableHosts     = "hosts"
	TableInstances = "instances"
	TableTaskDefs  = "taskdefs"
	TableTasks     = "tasks"
	TableIndex     = "index"
	TableServers   = "servers"
	TableTokens    = "tokens"
	TablePKI       = "pki" // one record: the cluster CA and join tokens
	TableServices  = "services"
)

// keyIndex is a memdb indexer over a string computed from the object. An empty key leaves the
// object out of the index (for optional indexes).
type keyIndex[T proto.Message] struct{ key func(T) string }

func (k keyIndex[T]) FromObject(obj any) (bool, []byte, error) {
	o, ok := obj.(T)
	if !ok {
		return false, nil, fmt.Errorf("state: index got %T", obj)
	}
	v := k.key(o)
	if v == "" {
		return false, nil, nil
	}
	return true, []byte(v + "\x00"), nil
}

func (k keyIndex[T]) FromArgs(args ...any) ([]byte, error) {
	if len(args) != 1 {
		return nil, fmt.Errorf("state: index takes one argument, got %d", len(args))
	}
	s, ok := args[0].(string)
	if !ok {
		return nil, fmt.Errorf("state: index argument must be a string, got %T", args[0])
	}
	return []byte(s + "\x00"), nil
}

func (k keyIndex[T]) PrefixFromArgs(args ...any) ([]byte, error) {
	b, err := k.FromArgs(args...)
	if err != nil {
		return nil, err
	}
	return b[:len(b)-1], nil
}

func index[T proto.Message](name string, unique bool, key func(T) string) *memdb.IndexSchema {
	return &memdb.IndexSchema{Name: name, Unique: unique, AllowMissing: !unique, Indexer: keyIndex[T]{key: key}}
}

// indexEntry records the Raft index at which a table last changed.
type indexEntry struct {
	Table string
	Index uint64
}

func schema() *memdb.DBSchema {
	return &memdb.DBSchema{Tables: map[string]*memdb.TableSchema{
		TableClusters: {Name: TableClusters, Indexes: map[string]*memdb.IndexSchema{
			"id": index("id", true, func(c *orchv1.Cluster) string { return c.GetClusterName() }),
		}},
		TableHosts: {Name: TableHosts, Indexes: map[string]*memdb.IndexSchema{
			"id": index("id", true, func(h *orchv1.Host) string { return h.GetId() }),
		}},
		TableInstances: {Name: TableInstances, Indexes: map[string]*memdb.IndexSchema{
			"id":      index("id", true, func(c *orchv1.ContainerInstance) string { return c.GetId() }),
			"cluster": index("cluster", false, func(c *orchv1.ContainerInstance) string { return c.GetCluster() }),
			"host":    index("host", false, func(c *orchv1.ContainerInstance) string { return c.GetHostId() }),
			"subnet":  index("subnet", false, subnetKey),
		}},
		TableTaskDefs: {Name: TableTaskDefs, Indexes: map[string]*memdb.IndexSchema{
			"id":     index("id", true, func(t *orchv1.TaskDefinition) string { return taskDefKey(t.GetFamily(), t.GetRevision()) }),
			"family": index("family", false, func(t *orchv1.TaskDefinition) string { return t.GetFamily() }),
		}},
		TableTasks: {Name: TableTasks, Indexes: map[string]*memdb.IndexSchema{
			// Only the indexes that must be: a placement and every status change rewrite each
			// (the bulk of the FSM's work per task). Tasks by cluster or by host go through the
			// container instances (objects.go); only services' tasks are indexed by group.
			"id":       index("id", true, func(t *orchv1.Task) string { return t.GetId() }),
			"instance": index("instance", false, func(t *orchv1.Task) string { return t.GetContainerInstanceId() }),
			"service":  index("service", false, taskServiceKey),
		}},
		TableServices: {Name: TableServices, Indexes: map[string]*memdb.IndexSchema{
			"id":      index("id", true, func(s *orchv1.Service) string { return serviceKey(s.GetCluster(), s.GetServiceName()) }),
			"cluster": index("cluster", false, func(s *orchv1.Service) string { return s.GetCluster() }),
		}},
		TableServers: {Name: TableServers, Indexes: map[string]*memdb.IndexSchema{
			"id": index("id", true, func(s *orchv1.SchedulerServer) string { return s.GetId() }),
		}},
		TableTokens: {Name: TableTokens, Indexes: map[string]*memdb.IndexSchema{
			"id":     index("id", true, func(t *orchv1.APIToken) string { return t.GetAccessorId() }),
			"secret": index("secret", true, func(t *orchv1.APIToken) string { return hex.EncodeToString(t.GetSecretHash()) }),
		}},
		TablePKI: {Name: TablePKI, Indexes: map[string]*memdb.IndexSchema{
			"id": index("id", true, func(*orchv1.ClusterPKI) string { return pkiKey }),
		}},
		TableIndex: {Name: TableIndex, Indexes: map[string]*memdb.IndexSchema{
			"id": {Name: "id", Unique: true, Indexer: &memdb.StringFieldIndex{Field: "Table"}},
		}},
	}}
}

// serviceKey is a service's key: its cluster and name.
func serviceKey(cluster, name string) string { return cluster + "/" + name }

// ServiceGroupPrefix starts the group of a service's tasks ("service:web"), as in ECS.
const ServiceGroupPrefix = "service:"

// taskServiceKey indexes a service's tasks by cluster and service; other tasks are left out.
func taskServiceKey(t *orchv1.Task) string {
	name, ok := strings.CutPrefix(t.GetGroup(), ServiceGroupPrefix)
	if !ok || name == "" {
		return ""
	}
	return serviceKey(t.GetCluster(), name)
}

// pkiKey is the key of the single ClusterPKI record.
const pkiKey = "cluster"

// subnetKey orders a cluster's container instances by the address of their subnet (IPv4, as
// eight hex digits, so that the string order is the numeric one).
func subnetKey(c *orchv1.ContainerInstance) string {
	p, err := netip.ParsePrefix(c.GetSubnet())
	if err != nil || !p.Addr().Is4() {
		return ""
	}
	a := p.Masked().Addr().As4()
	return c.GetCluster() + "\x00" + hex.EncodeToString(a[:])
}

// taskDefKey orders revisions numerically within a family.
func taskDefKey(family string, revision int32) string {
	return fmt.Sprintf("%s:%010d", family, revision)
}
