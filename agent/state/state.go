// Package state is the agent's local checkpoint (bbolt): its host id and, for every task it
// has been given, the assignment and the last status it observed. Together with containerd it
// is the truth after a restart: the agent adopts what runs, replays statuses it may not have
// delivered, and cleans up what nobody wants.
package state

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	orchv1 "orch/proto/orch/v1"
)

var (
	bucketMeta  = []byte("meta")
	bucketTasks = []byte("tasks")
	keyHostID   = []byte("host-id")
)

// DB is the checkpoint.
type DB struct{ db *bolt.DB }

// Open opens (or creates) the checkpoint at path.
func Open(path string) (*DB, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("checkpoint dir: %w", err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("checkpoint %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketMeta, bucketTasks} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("checkpoint %s: %w", path, err)
	}
	return &DB{db: db}, nil
}

// Close closes the checkpoint.
func (d *DB) Close() error { return d.db.Close() }

// HostID returns the saved host id, or "".
func (d *DB) HostID() (string, error) {
	var id string
	err := d.db.View(func(tx *bolt.Tx) error {
		id = string(tx.Bucket(bucketMeta).Get(keyHostID))
		return nil
	})
	return id, err
}

// SetHostID saves the host id.
func (d *DB) SetHostID(id string) error {
	return d.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put(keyHostID, []byte(id)) })
}

// PutTasks saves several tasks in one transaction (one fsync).
func (d *DB) PutTasks(cps []*orchv1.AgentCheckpoint) error {
	return d.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketTasks)
		for _, cp := range cps {
			buf, err := proto.Marshal(cp)
			if err != nil {
				return fmt.Errorf("checkpoint task %s: %w", cp.GetAssignment().GetTask().GetId(), err)
			}
			if err := b.Put([]byte(cp.GetAssignment().GetTask().GetId()), buf); err != nil {
				return err
			}
		}
		return nil
	})
}

// DeleteTask forgets a task.
func (d *DB) DeleteTask(id string) error {
	return d.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketTasks).Delete([]byte(id)) })
}

// Tasks returns every saved task.
func (d *DB) Tasks() ([]*orchv1.AgentCheckpoint, error) {
	var out []*orchv1.AgentCheckpoint
	err := d.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketTasks).ForEach(func(k, v []byte) error {
			cp := &orchv1.AgentCheckpoint{}
			if err := proto.Unmarshal(v, cp); err != nil {
				return fmt.Errorf("checkpoint task %s: %w", k, err)
			}
			out = append(out, cp)
			return nil
		})
	})
	return out, err
}
