package state

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"google.golang.org/protobuf/proto"

	orchv1 "orch/proto/orch/v1"
)

// Snapshot records: one byte of kind, a uvarint length, the proto bytes.
const (
	recCluster  byte = 1
	recHost     byte = 2
	recInstance byte = 3
	recTaskDef  byte = 4
	recTask     byte = 5
	recIndex    byte = 6
	recServer   byte = 7
	recToken    byte = 8
	recPKI      byte = 9
	recService  byte = 10
)

// WriteSnapshot streams every table of this read transaction to w.
func (r *ReadTxn) WriteSnapshot(w io.Writer) error {
	bw := bufio.NewWriter(w)
	var buf [binary.MaxVarintLen64]byte
	putRaw := func(kind byte, b []byte) error {
		n := binary.PutUvarint(buf[:], uint64(len(b)))
		if err := bw.WriteByte(kind); err != nil {
			return err
		}
		if _, err := bw.Write(buf[:n]); err != nil {
			return err
		}
		_, err := bw.Write(b)
		return err
	}
	put := func(kind byte, m proto.Message) error {
		b, err := proto.Marshal(m)
		if err != nil {
			return err
		}
		return putRaw(kind, b)
	}
	tables := []struct {
		table string
		kind  byte
	}{
		{TableClusters, recCluster}, {TableHosts, recHost}, {TableInstances, recInstance},
		{TableTaskDefs, recTaskDef}, {TableTasks, recTask}, {TableServers, recServer}, {TableTokens, recToken},
		{TablePKI, recPKI}, {TableServices, recService},
	}
	for _, t := range tables {
		it, err := r.txn.Get(t.table, "id")
		if err != nil {
			return fmt.Errorf("snapshot %s: %w", t.table, err)
		}
		for raw := it.Next(); raw != nil; raw = it.Next() {
			if err := put(t.kind, raw.(proto.Message)); err != nil {
				return fmt.Errorf("snapshot %s: %w", t.table, err)
			}
		}
	}
	it, err := r.txn.Get(TableIndex, "id")
	if err != nil {
		return err
	}
	for raw := it.Next(); raw != nil; raw = it.Next() {
		e := raw.(*indexEntry)
		// An index record is the uvarint index followed by the table name.
		rec := binary.AppendUvarint(nil, e.Index)
		if err := putRaw(recIndex, append(rec, e.Table...)); err != nil {
			return err
		}
	}
	return bw.Flush()
}

// ReadSnapshot builds a new store from a stream written by WriteSnapshot.
func ReadSnapshot(rd io.Reader) (*Store, error) {
	s, err := New()
	if err != nil {
		return nil, err
	}
	br := bufio.NewReader(rd)
	txn := s.db.Txn(true)
	defer txn.Abort()
	for {
		kind, err := br.ReadByte()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("restore: %w", err)
		}
		n, err := binary.ReadUvarint(br)
		if err != nil {
			return nil, fmt.Errorf("restore: length: %w", err)
		}
		b := make([]byte, n)
		if _, err := io.ReadFull(br, b); err != nil {
			return nil, fmt.Errorf("restore: record: %w", err)
		}
		var table string
		var m proto.Message
		switch kind {
		case recCluster:
			table, m = TableClusters, &orchv1.Cluster{}
		case recHost:
			table, m = TableHosts, &orchv1.Host{}
		case recInstance:
			table, m = TableInstances, &orchv1.ContainerInstance{}
		case recTaskDef:
			table, m = TableTaskDefs, &orchv1.TaskDefinition{}
		case recTask:
			table, m = TableTasks, &orchv1.Task{}
		case recToken:
			table, m = TableTokens, &orchv1.APIToken{}
		case recService:
			table, m = TableServices, &orchv1.Service{}
		case recPKI:
			table, m = TablePKI, &orchv1.ClusterPKI{}
		case recServer:
			table, m = TableServers, &orchv1.SchedulerServer{}
		case recIndex:
			idx, n := binary.Uvarint(b)
			if n <= 0 {
				return nil, errors.New("restore: bad index record")
			}
			if err := txn.Insert(TableIndex, &indexEntry{Table: string(b[n:]), Index: idx}); err != nil {
				return nil, err
			}
			continue
		default:
			return nil, fmt.Errorf("restore: unknown record kind %d", kind)
		}
		if err := proto.Unmarshal(b, m); err != nil {
			return nil, fmt.Errorf("restore: %s: %w", table, err)
		}
		if err := txn.Insert(table, m); err != nil {
			return nil, fmt.Errorf("restore: %s: %w", table, err)
		}
		if t, ok := m.(*orchv1.Task); ok {
			s.committed[t.GetId()] = t
		}
	}
	txn.Commit()
	return s, nil
}
