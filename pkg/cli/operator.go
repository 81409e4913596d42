package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"orch/pkg/pki"
	orchv1 "orch/proto/orch/v1"
)

// SnapshotIndexMetadata is the gRPC header or trailer in which SnapshotSave may report the Raft
// index of the snapshot it streams; save prints it when present.
const SnapshotIndexMetadata = "orch-snapshot-index"

// snapshotChunkSize is how much of a snapshot file one SnapshotRestore message carries, well
// under gRPC's default 4 MiB message limit.
const snapshotChunkSize = 256 << 10

// operatorCmd is `orchctl operator`: the control plane's own administration (Raft membership,
// backups, tokens, the cluster CA), through the Operator service.
func (a *app) operatorCmd() *cobra.Command {
	op := &cobra.Command{
		Use:   "operator",
		Short: "Administer the control plane: Raft peers, snapshots, tokens, the cluster CA",
		Long: `Administer the schedulers that make up the control plane: list and remove Raft peers,
save the whole state to a sealed file and restore it, create the first API token, show and
rotate the join tokens that enroll agents and schedulers, create the CA of a new cluster.`,
		Example: `  orchctl operator raft list-peers
  orchctl operator snapshot save backup.snap
  orchctl operator join-token worker
  orchctl operator ca create --out ./orch-ca`,
		RunE: groupUsage,
	}
	raft := &cobra.Command{
		Use:     "raft",
		Short:   "List and remove the schedulers of the Raft cluster",
		Example: `  orchctl operator raft list-peers`,
		RunE:    groupUsage,
	}
	raft.AddCommand(a.raftListPeersCmd(), a.raftRemovePeerCmd())
	snap := &cobra.Command{
		Use:   "snapshot",
		Short: "Save the whole state of the control plane to a sealed file, or restore it",
		Example: `  orchctl operator snapshot save backup.snap --passphrase-file /root/snapshot.pass
  orchctl operator snapshot restore backup.snap --passphrase-file /root/snapshot.pass --yes`,
		RunE: groupUsage,
	}
	snap.AddCommand(a.snapshotSaveCmd(), a.snapshotRestoreCmd())
	op.AddCommand(raft, snap, a.bootstrapTokenCmd(), a.joinTokenCmd(), a.caCmd())
	return op
}

func (a *app) bootstrapTokenCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "bootstrap-token",
		Short: "Create the first management API token (once) and print its secret",
		Long: `Create the first management API token of a new cluster and print its secret. It is shown
this once: the schedulers keep only its hash, and a second call fails. Every other call needs
it, so save it right away with 'orchctl configure --token TOKEN' (or pass it as --token or
$ORCH_TOKEN). This call needs no token, only the CA certificate (--ca-cert).`,
		Example: `  # print it, then save it:
  orchctl operator bootstrap-token
  orchctl configure --token orch_...
  # or both at once:
  orchctl configure --token "$(orchctl operator bootstrap-token -o json | jq -r .secretId)"`,
		Args: cobra.NoArgs,
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			op, err := a.operator(cmd)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			resp, err := op.BootstrapToken(ctx, &orchv1.BootstrapTokenRequest{})
			if err != nil {
				return apiError(ctx, "BootstrapToken", err)
			}
			if a.json() {
				return writeJSON(cmd.OutOrStdout(), resp)
			}
			t := newTable(cmd.OutOrStdout(), "ACCESSOR", "SECRET")
			t.row(resp.AccessorId, resp.SecretId)
			return t.flush()
		}),
	}
}

// groupUsage runs a command that only groups others: without arguments it prints its help,
// with any it fails as an unknown command would.
func groupUsage(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return cmd.Help()
	}
	return usageError(fmt.Sprintf("orchctl: error: unknown command %q for %q", args[0], cmd.CommandPath()))
}

func (a *app) operator(cmd *cobra.Command) (orchv1.OperatorClient, error) {
	c, err := a.dial(cmd)
	if err != nil {
		return nil, err
	}
	return orchv1.NewOperatorClient(c.Conn()), nil
}

func (a *app) raftListPeersCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "list-peers",
		Short: "List the schedulers of the Raft cluster",
		Long: `List the schedulers of the Raft cluster: id, Raft address, API address, whether it is the
leader and a voter, and its state (alive, failed, left).`,
		Example: `  orchctl operator raft list-peers
  orchctl operator raft list-peers -o json`,
		Args: cobra.NoArgs,
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			op, err := a.operator(cmd)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			resp, err := op.RaftListPeers(ctx, &orchv1.RaftListPeersRequest{})
			if err != nil {
				return apiError(ctx, "RaftListPeers", err)
			}
			if a.json() {
				return writeJSON(cmd.OutOrStdout(), resp)
			}
			t := newTable(cmd.OutOrStdout(), "ID", "ADDRESS", "API", "LEADER", "VOTER", "STATE")
			for _, s := range resp.Servers {
				t.row(s.Id, s.RaftAddress, s.GrpcAddress, strconv.FormatBool(s.Leader), strconv.FormatBool(s.Voter), s.State)
			}
			return t.flush()
		}),
	}
}

func (a *app) raftRemovePeerCmd() *cobra.Command {
	var id, address string
	cmd := &cobra.Command{
		Use:   "remove-peer (--peer-id ID | --peer-address ADDR)",
		Short: "Remove a scheduler from the Raft cluster",
		Long: `Remove a scheduler from the Raft cluster, by id or by address (its Raft or API address).
Use it for a scheduler that is gone for good: a stopped scheduler still counts in the quorum
until it is removed.`,
		Example: `  orchctl operator raft remove-peer --peer-id sched-3
  orchctl operator raft remove-peer --peer-address 10.0.0.3:7402`,
		Args: cobra.NoArgs,
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			if id == "" && address == "" {
				return usageError("orchctl: error: one of --peer-id and --peer-address is required and must not be empty")
			}
			op, err := a.operator(cmd)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			resp, err := op.RaftRemovePeer(ctx, &orchv1.RaftRemovePeerRequest{Id: id, Address: address})
			if err != nil {
				return apiError(ctx, "RaftRemovePeer", err)
			}
			if a.json() {
				return writeJSON(cmd.OutOrStdout(), resp)
			}
			if id != "" {
				_, err = fmt.Fprintf(cmd.OutOrStdout(), "Removed peer with id %q\n", id)
			} else {
				_, err = fmt.Fprintf(cmd.OutOrStdout(), "Removed peer with address %q\n", address)
			}
			return err
		}),
	}
	cmd.Flags().StringVar(&id, "peer-id", "", "id of the scheduler to remove")
	cmd.Flags().StringVar(&address, "peer-address", "", "Raft or API address (host:port) of the scheduler to remove")
	cmd.MarkFlagsOneRequired("peer-id", "peer-address")
	cmd.MarkFlagsMutuallyExclusive("peer-id", "peer-address")
	return cmd
}

// savedSnapshot is what `snapshot save -o json` prints.
type savedSnapshot struct {
	File  string `json:"file"`
	Size  int64  `json:"size"`
	Index uint64 `json:"index,omitempty"`
}

func (a *app) snapshotSaveCmd() *cobra.Command {
	var passFile string
	cmd := &cobra.Command{
		Use:   "save FILE",
		Short: "Save the whole state of the control plane to FILE, sealed with a passphrase",
		Long: `Save a snapshot of the whole state (clusters, task definitions, tasks, container
instances, API tokens, join tokens and the cluster CA with its private key) from the leader
to FILE. The state holds the cluster's secrets, so the file is sealed: encrypted and
authenticated (AES-256-GCM) with a key derived from a passphrase of at least ` + fmt.Sprint(MinPassphraseLength) + `
characters, read from --passphrase-file, else $` + EnvSnapshotPassphrase + `, else asked twice on
the terminal. Keep the passphrase apart from the file: neither is of use without the other.

The file is written next to FILE under a temporary name and renamed when complete, so FILE is
never left half-written; it is readable by its owner only. Restore it with 'orchctl operator
snapshot restore', or on a blank machine with 'orch-scheduler --restore FILE'.`,
		Example: `  orchctl operator snapshot save /var/backups/orch-$(date +%F).snap --passphrase-file /root/snapshot.pass
  ORCH_SNAPSHOT_PASSPHRASE=... orchctl operator snapshot save backup.snap`,
		Args: cobra.ExactArgs(1),
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			file := args[0]
			ctx := cmd.Context()
			pass, err := ReadPassphrase(ctx, Passphrase{File: passFile, Confirm: true, In: cmd.InOrStdin(), Prompt: cmd.ErrOrStderr()})
			if err != nil {
				return passphraseError(ctx, file, err)
			}
			// The temporary file first: a directory that cannot be written fails before the
			// leader does any work.
			tmp, err := os.CreateTemp(filepath.Dir(file), "."+filepath.Base(file)+".tmp-*")
			if err != nil {
				return fmt.Errorf("snapshot %s: %w", file, err)
			}
			done := false
			defer func() {
				if !done {
					tmp.Close()
					os.Remove(tmp.Name())
				}
			}()
			op, err := a.operator(cmd)
			if err != nil {
				return err
			}
			stream, err := op.SnapshotSave(ctx, &orchv1.SnapshotSaveRequest{})
			if err != nil {
				return apiError(ctx, "SnapshotSave", err)
			}
			// Sealing authenticates the whole plaintext at once, so the snapshot is gathered
			// in memory (a control plane's state is megabytes, not gigabytes).
			var plain bytes.Buffer
			for {
				chunk, err := stream.Recv()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					return apiError(ctx, "SnapshotSave", err)
				}
				plain.Write(chunk.Data)
			}
			if plain.Len() == 0 {
				return fmt.Errorf("snapshot %s: the scheduler sent an empty snapshot; nothing written", file)
			}
			sealed, err := pki.Seal(plain.Bytes(), pass)
			if err != nil {
				return fmt.Errorf("snapshot %s: %w", file, err)
			}
			if _, err := tmp.Write(sealed); err != nil {
				return fmt.Errorf("snapshot %s: write: %w", file, err)
			}
			if err := commitFile(tmp, file); err != nil {
				return err
			}
			done = true
			saved := savedSnapshot{File: file, Size: int64(len(sealed)), Index: snapshotIndex(stream)}
			out := cmd.OutOrStdout()
			if a.json() {
				b, err := json.MarshalIndent(saved, "", "  ")
				if err != nil {
					return err
				}
				_, err = out.Write(append(b, '\n'))
				return err
			}
			index := ""
			if saved.Index != 0 {
				index = fmt.Sprintf(", index %d", saved.Index)
			}
			_, err = fmt.Fprintf(out, "Saved snapshot to %s (%s sealed%s)\n", file, formatBytes(saved.Size), index)
			return err
		}),
	}
	cmd.Flags().StringVar(&passFile, "passphrase-file", "", "file holding the passphrase to seal the snapshot with (default $"+EnvSnapshotPassphrase+", else asked on the terminal)")
	return cmd
}

// passphraseError makes ReadPassphrase's error a command error: a usage error when no
// passphrase was given at all.
func passphraseError(ctx context.Context, file string, err error) error {
	switch {
	case ctx.Err() != nil:
		return &exitError{code: exitInterrupted, err: err}
	case errors.Is(err, ErrPassphraseRequired):
		return usageError("orchctl: error: snapshot " + file + ": " + err.Error())
	}
	return fmt.Errorf("snapshot %s: %w", file, err)
}

// commitFile makes the complete temporary file tmp durable as name: fsync, rename over name,
// fsync the directory so that the rename survives a crash.
func commitFile(tmp *os.File, name string) error {
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("snapshot %s: sync: %w", name, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("snapshot %s: close: %w", name, err)
	}
	if err := os.Rename(tmp.Name(), name); err != nil {
		return fmt.Errorf("snapshot %s: %w", name, err)
	}
	d, err := os.Open(filepath.Dir(name))
	if err != nil {
		return fmt.Errorf("snapshot %s: sync directory: %w", name, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("snapshot %s: sync directory: %w", name, err)
	}
	return nil
}

// snapshotIndex reads the snapshot's Raft index from the stream's trailer or header, 0 when
// the scheduler did not send it.
func snapshotIndex(stream grpc.ServerStreamingClient[orchv1.SnapshotChunk]) uint64 {
	for _, md := range []metadata.MD{stream.Trailer(), headerOf(stream)} {
		if v := md.Get(SnapshotIndexMetadata); len(v) > 0 {
			if n, err := strconv.ParseUint(v[0], 10, 64); err == nil {
				return n
			}
		}
	}
	return 0
}

func headerOf(stream grpc.ClientStream) metadata.MD {
	md, err := stream.Header()
	if err != nil {
		return nil
	}
	return md
}

func (a *app) snapshotRestoreCmd() *cobra.Command {
	var yes bool
	var passFile string
	cmd := &cobra.Command{
		Use:   "restore FILE --yes",
		Short: "Replace the whole state of the control plane with a saved snapshot",
		Long: `Replace the whole state of the control plane (every cluster, task definition, task, ...)
with the snapshot in FILE, made by 'orchctl operator snapshot save'. The file is opened with
its passphrase (--passphrase-file, else $` + EnvSnapshotPassphrase + `, else asked on the terminal)
before anything is sent: a wrong passphrase or a modified file changes nothing. The leader
applies the snapshot and replicates it to every scheduler. Everything that changed since the
snapshot was saved is lost, so the command asks for --yes.`,
		Example: `  orchctl operator snapshot restore /var/backups/orch-2025-03-01.snap --passphrase-file /root/snapshot.pass --yes`,
		Args:    cobra.ExactArgs(1),
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			file := args[0]
			if !yes {
				return usageErrorf("--yes", "restoring %s replaces the whole state of the control plane; pass --yes to confirm", file)
			}
			if st, err := os.Stat(file); err != nil {
				return fmt.Errorf("snapshot %s: %w", file, err)
			} else if !st.Mode().IsRegular() || st.Size() == 0 {
				return fmt.Errorf("snapshot %s: not a snapshot file (empty or not a regular file)", file)
			}
			ctx := cmd.Context()
			pass, err := ReadPassphrase(ctx, Passphrase{File: passFile, In: cmd.InOrStdin(), Prompt: cmd.ErrOrStderr()})
			if err != nil {
				return passphraseError(ctx, file, err)
			}
			sealed, err := os.ReadFile(file)
			if err != nil {
				return fmt.Errorf("snapshot %s: %w", file, err)
			}
			plain, err := pki.Open(sealed, pass)
			switch {
			case errors.Is(err, pki.ErrWrongPassphrase):
				return fmt.Errorf("snapshot %s: wrong passphrase, or the file was modified; nothing was restored", file)
			case errors.Is(err, pki.ErrNotSealed):
				return fmt.Errorf("snapshot %s: not a sealed orch snapshot (made by 'orchctl operator snapshot save'); nothing was restored", file)
			case err != nil:
				return fmt.Errorf("snapshot %s: %w; nothing was restored", file, err)
			}
			op, err := a.operator(cmd)
			if err != nil {
				return err
			}
			stream, err := op.SnapshotRestore(ctx)
			if err != nil {
				return apiError(ctx, "SnapshotRestore", err)
			}
			size, err := sendFile(stream, bytes.NewReader(plain))
			if err != nil {
				return err
			}
			resp, err := stream.CloseAndRecv()
			if err != nil {
				return apiError(ctx, "SnapshotRestore", err)
			}
			if a.json() {
				return writeJSON(cmd.OutOrStdout(), resp)
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "Restored snapshot %s (%s) at index %d\n", file, formatBytes(size), resp.Index)
			return err
		}),
	}
	cmd.Flags().BoolVar(&yes, "yes", false, "confirm that the whole state is to be replaced")
	cmd.Flags().StringVar(&passFile, "passphrase-file", "", "file holding the snapshot's passphrase (default $"+EnvSnapshotPassphrase+", else asked on the terminal)")
	return cmd
}

// sendFile streams r in chunks. When the scheduler ends the stream early (Send returns io.EOF)
// it stops: CloseAndRecv then returns the scheduler's error.
func sendFile(stream grpc.ClientStreamingClient[orchv1.SnapshotChunk, orchv1.SnapshotRestoreResponse], r io.Reader) (int64, error) {
	buf := make([]byte, snapshotChunkSize)
	var size int64
	for {
		n, err := io.ReadFull(r, buf)
		if n > 0 {
			// Send serialises the message before it returns, so buf can be reused.
			if serr := stream.Send(&orchv1.SnapshotChunk{Data: buf[:n]}); serr != nil {
				if errors.Is(serr, io.EOF) {
					return size, nil
				}
				return size, fmt.Errorf("snapshot: send: %w", serr)
			}
			size += int64(n)
		}
		switch {
		case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
			return size, nil
		case err != nil:
			return size, fmt.Errorf("snapshot: read: %w", err)
		}
	}
}
