package server

import (
	"bytes"
	"errors"
	"fmt"

	"path/filepath"

	"github.com/hashicorp/raft"

	"orch/pkg/pki"
	"orch/scheduler/state"
)

// A snapshot restores two ways:
//   - onto a running cluster (`orchctl operator snapshot restore`): raft.Restore on every
//     server; the snapshot must be of this cluster (same CA), because every certificate of
//     the cluster chains to it;
//   - onto a blank machine (`orch-scheduler --restore FILE`): the new server's certificate is
//     issued by the snapshot's CA, it bootstraps a one-server cluster and installs the
//     snapshot once it leads. Agents and clients of the old cluster trust it as they did.
// Both need the cluster CA in the snapshot (it travels there, sealed with the passphrase
// of the file; see orchctl).

// snapshotCA decodes a snapshot body and returns its cluster CA.
func snapshotCA(st *state.Store) (*pki.CA, error) {
	p, err := st.Read().PKI(nil)
	if err != nil {
		return nil, err
	}
	if p == nil {
		return nil, errors.New("snapshot: it holds no cluster CA (taken before the cluster had one?)")
	}
	ca, err := pki.UnmarshalPlain(p.GetCa())
	if err != nil {
		return nil, fmt.Errorf("snapshot: cluster CA: %w", err)
	}
	return ca, nil
}

// prepareRestore checks Config.Restore and that the data dir is blank, and keeps the
// snapshot to install once this server leads. It returns the snapshot's CA.
func (s *Server) prepareRestore(snap []byte) (*pki.CA, error) {
	for _, p := range []string{filepath.Join(s.cfg.DataDir, "raft", "raft.db"), filepath.Join(s.cfg.DataDir, "tls")} {
		if fileExists(p) {
			return nil, fmt.Errorf("--restore needs an empty data dir, and %s exists", p)
		}
	}
	body, ok := bytes.CutPrefix(snap, []byte(snapshotMagic))
	if !ok {
		return nil, errors.New("--restore: not an orch snapshot (bad header)")
	}
	st, err := state.ReadSnapshot(bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("--restore: %w", err)
	}
	ca, err := snapshotCA(st)
	if err != nil {
		return nil, fmt.Errorf("--restore: %w", err)
	}
	s.restore = body
	s.log.Info("restoring a snapshot onto this new server", "ca", pki.CADigest(ca.Cert), "index", st.Read().LatestIndex())
	return ca, nil
}

// installRestore replaces the state of the new one-server cluster with the snapshot.
func (s *Server) installRestore() error {
	meta := &raft.SnapshotMeta{Version: raft.SnapshotVersionMax, Size: int64(len(s.restore))}
	if err := s.raft.Raft().Restore(meta, bytes.NewReader(s.restore), 0); err != nil {
		return err
	}
	s.restore = nil
	s.log.Warn("state restored from the snapshot", "index", s.raft.Raft().AppliedIndex())
	return nil
}
