package state

import (
	"errors"
	"fmt"
	"sync"

	"github.com/hashicorp/go-memdb"
	"google.golang.org/protobuf/proto"

	orchv1 "orch/proto/orch/v1"
)

// Store is the in-memory state. Reads take a consistent snapshot (MVCC); writes happen only in
// the FSM, one write transaction per Raft entry.
type Store struct {
	mu        sync.RWMutex
	db        *memdb.MemDB
	abandonCh chan struct{} // closed when a restore replaces db

	// hostMu guards hostWatch: per host, a channel closed at the next commit that changes one
	// of the host's tasks (as hostSees tells). memdb's own watch channels are coarse for a
	// prefix with no entries (the watch falls back to a shared ancestor node), which woke every
	// idle agent session at every task change in a 1,000-node cluster.
	hostMu    sync.Mutex
	hostWatch map[string]chan struct{}
	trackers  []*HostChanges

	// committed is every committed task by id, for the FSM's point reads (WriteTxn.Task):
	// go-memdb's lookup costs about 1.5 µs, and each task placed and run takes two on every
	// scheduler. Only the writer uses it: a commit updates it while it still holds go-memdb's
	// writer lock, a restore replaces it whole.
	committed map[string]*orchv1.Task
}

// New returns an empty store.
func New() (*Store, error) {
	db, err := memdb.NewMemDB(schema())
	if err != nil {
		return nil, fmt.Errorf("state: schema: %w", err)
	}
	return &Store{db: db, abandonCh: make(chan struct{}), hostWatch: map[string]chan struct{}{},
		committed: map[string]*orchv1.Task{}}, nil
}

// Read returns a read-only snapshot of the state.
func (s *Store) Read() *ReadTxn {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return &ReadTxn{txn: s.db.Txn(false)}
}

// AbandonCh is closed when the store's contents are replaced by a snapshot restore; blocking
// readers add it to their watch set so that they re-read.
func (s *Store) AbandonCh() <-chan struct{} {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.abandonCh
}

// Write starts the write transaction of the Raft entry at index. Commit or Abort it.
func (s *Store) Write(index uint64) *WriteTxn {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return &WriteTxn{ReadTxn: ReadTxn{txn: s.db.Txn(true)}, committed: s.committed, index: index, store: s}
}

// HostWatch returns a channel that is closed when a later commit changes the host's tasks in
// a way its watchers act on (a task placed or deleted, a desired status, a task stopped, an
// address held or released: hostSees), or a restore replaces the state. Take it before
// reading, then wait on it.
func (s *Store) HostWatch(host string) <-chan struct{} {
	s.hostMu.Lock()
	defer s.hostMu.Unlock()
	ch, ok := s.hostWatch[host]
	if !ok {
		ch = make(chan struct{})
		s.hostWatch[host] = ch
	}
	return ch
}

// HostChanges collects the hosts whose tasks changed (as HostWatch sees it), for a reader that
// keeps something per host and wants what changed since it last looked, without a watch
// channel per host to poll (the planner's cache of 10,000 hosts).
type HostChanges struct {
	mu    sync.Mutex
	hosts map[string]bool
	all   bool
}

// TrackHosts returns a collector of the hosts whose tasks change from now on. It lives as long
// as the store.
func (s *Store) TrackHosts() *HostChanges {
	s.hostMu.Lock()
	defer s.hostMu.Unlock()
	c := &HostChanges{hosts: map[string]bool{}}
	s.trackers = append(s.trackers, c)
	return c
}

// Take returns the hosts whose tasks changed since the last Take and forgets them; all is true
// when a restore replaced the whole state meanwhile. Take before reading, as with HostWatch: a
// change between Take and the read shows in the read and again at the next Take.
func (c *HostChanges) Take() (hosts map[string]bool, all bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	hosts, all = c.hosts, c.all
	c.hosts, c.all = map[string]bool{}, false
	return hosts, all
}

func (s *Store) notifyHosts(hosts map[string]bool) {
	s.hostMu.Lock()
	defer s.hostMu.Unlock()
	for h := range hosts {
		if ch, ok := s.hostWatch[h]; ok {
			close(ch)
			delete(s.hostWatch, h)
		}
	}
	for _, c := range s.trackers {
		c.mu.Lock()
		for h := range hosts {
			c.hosts[h] = true
		}
		c.mu.Unlock()
	}
}

// Replace swaps in the contents of other (a restored snapshot) and wakes every watcher.
func (s *Store) Replace(other *Store) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.db, s.committed = other.db, other.committed
	close(s.abandonCh)
	s.abandonCh = make(chan struct{})
	s.hostMu.Lock()
	for h, ch := range s.hostWatch {
		close(ch)
		delete(s.hostWatch, h)
	}
	for _, c := range s.trackers {
		c.mu.Lock()
		c.all = true
		c.mu.Unlock()
	}
	s.hostMu.Unlock()
}

// ReadTxn reads one consistent version of the state.
type ReadTxn struct{ txn *memdb.Txn }

// WatchSet collects channels that fire when what was read changes.
type WatchSet = memdb.WatchSet

// NewWatchSet returns an empty watch set.
func NewWatchSet() WatchSet { return memdb.NewWatchSet() }

// TableIndex returns the Raft index at which table last changed.
func (r *ReadTxn) TableIndex(table string) uint64 {
	raw, err := r.txn.First(TableIndex, "id", table)
	if err != nil || raw == nil {
		return 0
	}
	return raw.(*indexEntry).Index
}

// LatestIndex is the highest Raft index applied to any table.
func (r *ReadTxn) LatestIndex() uint64 {
	it, err := r.txn.Get(TableIndex, "id")
	if err != nil {
		return 0
	}
	var max uint64
	for raw := it.Next(); raw != nil; raw = it.Next() {
		if i := raw.(*indexEntry).Index; i > max {
			max = i
		}
	}
	return max
}

func first[T proto.Message](r *ReadTxn, ws WatchSet, table, idx string, arg string) (T, error) {
	var zero T
	ch, raw, err := r.txn.FirstWatch(table, idx, arg)
	if err != nil {
		return zero, fmt.Errorf("state: %s %s=%q: %w", table, idx, arg, err)
	}
	if ws != nil {
		ws.Add(ch)
	}
	if raw == nil {
		return zero, nil
	}
	return raw.(T), nil
}

func list[T proto.Message](r *ReadTxn, ws WatchSet, table, idx string, args ...any) ([]T, error) {
	it, err := r.txn.Get(table, idx, args...)
	if err != nil {
		return nil, fmt.Errorf("state: %s by %s: %w", table, idx, err)
	}
	if ws != nil {
		ws.Add(it.WatchCh())
	}
	var out []T
	for raw := it.Next(); raw != nil; raw = it.Next() {
		out = append(out, raw.(T))
	}
	return out, nil
}

// WriteTxn is the write transaction of one Raft entry.
//
// Its Task reads the tasks it wrote from a map, and the others from the store's map of
// committed tasks, not through the memdb write transaction: a read of an index that the
// transaction has changed makes memdb drop the transaction's cache of tree nodes it already
// copied, so that the next write copies the whole path from the root again, with a new watch
// channel for each node. Merging a batch of status reports reads and writes each task in turn;
// through the write transaction that doubled the FSM's cost per task.
type WriteTxn struct {
	ReadTxn
	tasks     map[string]*orchv1.Task // tasks written by this transaction, by id; nil: deleted
	committed map[string]*orchv1.Task // the store's, when the transaction began
	index     uint64
	touched   map[string]bool
	hosts     map[string]bool // hosts whose tasks changed
	store     *Store
}

// Index is the Raft index of the entry being applied.
func (w *WriteTxn) Index() uint64 { return w.index }

func (w *WriteTxn) insert(table string, obj proto.Message) error {
	if err := w.txn.Insert(table, obj); err != nil {
		return fmt.Errorf("state: insert into %s: %w", table, err)
	}
	w.touch(table)
	return nil
}

func (w *WriteTxn) delete(table string, obj proto.Message) error {
	if err := w.txn.Delete(table, obj); err != nil && !errors.Is(err, memdb.ErrNotFound) {
		return fmt.Errorf("state: delete from %s: %w", table, err)
	}
	w.touch(table)
	return nil
}

func (w *WriteTxn) touch(table string) {
	if w.touched == nil {
		w.touched = map[string]bool{}
	}
	w.touched[table] = true
}

// Commit records the entry's index on every table it changed and makes the changes visible.
func (w *WriteTxn) Commit() error {
	for table := range w.touched {
		if err := w.txn.Insert(TableIndex, &indexEntry{Table: table, Index: w.index}); err != nil {
			w.txn.Abort()
			return fmt.Errorf("state: index of %s: %w", table, err)
		}
	}
	for id, t := range w.tasks { // under memdb's writer lock, which Commit releases
		if t == nil {
			delete(w.committed, id)
		} else {
			w.committed[id] = t
		}
	}
	w.txn.Commit()
	if len(w.hosts) > 0 {
		w.store.notifyHosts(w.hosts)
	}
	return nil
}

func (w *WriteTxn) touchHost(host string) {
	if w.hosts == nil {
		w.hosts = map[string]bool{}
	}
	w.hosts[host] = true
}

// Abort drops the transaction's changes.
func (w *WriteTxn) Abort() { w.txn.Abort() }
