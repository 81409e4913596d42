package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"orch/pkg/pki"
	orchv1 "orch/proto/orch/v1"
)

// Join token kinds as orchctl spells them (and RotateJoinTokenRequest.kind).
const (
	kindWorker  = "worker"
	kindManager = "manager"
)

// tokenKindArg checks the KIND argument of join-token: exactly one of worker and manager, or
// none when optional.
func tokenKindArg(optional bool) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		switch {
		case len(args) == 0 && optional:
			return nil
		case len(args) == 1 && (args[0] == kindWorker || args[0] == kindManager):
			return nil
		case len(args) > 1:
			return usageError(fmt.Sprintf("orchctl: error: %s takes one kind, got %q", cmd.CommandPath(), args))
		case len(args) == 1:
			return usageError(fmt.Sprintf("orchctl: error: argument KIND: invalid choice: %q (choose from worker, manager)", args[0]))
		}
		return usageError("orchctl: error: argument KIND: choose worker (enrolls an agent) or manager (enrolls a scheduler)")
	}
}

func tokenOf(t *orchv1.JoinTokens, kind string) string {
	if kind == kindManager {
		return t.GetManager()
	}
	return t.GetWorker()
}

func (a *app) joinTokenCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "join-token (worker | manager)",
		Short: "Print the token that enrolls a new agent (worker) or scheduler (manager)",
		Long: `Print a join token. A worker token lets a new agent enroll (orch-agent --join-token): it
gets a certificate of the cluster CA and a host id. A manager token lets a new scheduler join
the control plane (orch-scheduler --join ADDR --join-token). Both pin the cluster CA, so the
new node can verify the cluster before trusting it. Anyone holding a token can enroll nodes:
keep them secret, and rotate them ('orchctl operator join-token rotate') when one leaks.
-o json prints both tokens and the CA digest.`,
		Example: `  orch-agent --scheduler 10.0.0.1:7400 --join-token "$(orchctl operator join-token worker)"
  orchctl operator join-token manager
  orchctl operator join-token worker -o json`,
		Args:      tokenKindArg(false),
		ValidArgs: []string{kindWorker, kindManager},
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			op, err := a.operator(cmd)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			resp, err := op.GetJoinTokens(ctx, &orchv1.GetJoinTokensRequest{})
			if err != nil {
				return apiError(ctx, "GetJoinTokens", err)
			}
			if a.json() {
				return writeJSON(cmd.OutOrStdout(), resp)
			}
			tok := tokenOf(resp, args[0])
			if tok == "" {
				return fmt.Errorf("the cluster has no %s join token yet (the first leader creates them); try again in a moment", args[0])
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), tok)
			return err
		}),
	}
	cmd.AddCommand(a.joinTokenRotateCmd())
	return cmd
}

func (a *app) joinTokenRotateCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "rotate [worker | manager]",
		Short: "Replace a join token (both when no kind is given) and print the new one",
		Long: `Replace the worker or the manager join token, or both when no kind is given, and print
the new tokens. The old tokens no longer enroll anything; nodes already enrolled keep their
certificates and keep working.`,
		Example: `  orchctl operator join-token rotate worker
  orchctl operator join-token rotate -o json`,
		Args:      tokenKindArg(true),
		ValidArgs: []string{kindWorker, kindManager},
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			kinds := []string{kindWorker, kindManager}
			if len(args) == 1 {
				kinds = args
			}
			op, err := a.operator(cmd)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			req := &orchv1.RotateJoinTokenRequest{}
			if len(args) == 1 {
				req.Kind = args[0]
			}
			resp, err := op.RotateJoinToken(ctx, req)
			if err != nil {
				return apiError(ctx, "RotateJoinToken", err)
			}
			if a.json() {
				return writeJSON(cmd.OutOrStdout(), resp)
			}
			out := cmd.OutOrStdout()
			if len(kinds) == 1 {
				fmt.Fprintf(out, "Rotated the %s join token: the old one no longer enrolls anything (nodes already enrolled keep their certificates).\n", kinds[0])
			} else {
				fmt.Fprintln(out, "Rotated the worker and manager join tokens: the old ones no longer enroll anything (nodes already enrolled keep their certificates).")
			}
			t := newTable(out, "KIND", "TOKEN")
			for _, k := range kinds {
				t.row(k, tokenOf(resp, k))
			}
			return t.flush()
		}),
	}
}

func (a *app) caCmd() *cobra.Command {
	ca := &cobra.Command{
		Use:   "ca",
		Short: "Create the certificate authority of a new multi-scheduler cluster",
		Example: `  orchctl operator ca create --out ./orch-ca
  orchctl operator ca create --out ./orch-ca --cluster-name prod`,
		RunE: groupUsage,
	}
	ca.AddCommand(a.caCreateCmd())
	return ca
}

// createdCA is what `ca create -o json` prints.
type createdCA struct {
	ClusterName string    `json:"clusterName"`
	CACert      string    `json:"caCert"`
	CAKey       string    `json:"caKey"`
	CADigest    string    `json:"caDigest"`
	NotAfter    time.Time `json:"notAfter"`
}

func (a *app) caCreateCmd() *cobra.Command {
	var dir, name string
	cmd := &cobra.Command{
		Use:   "create --out DIR [--cluster-name NAME]",
		Short: "Create a cluster CA: DIR/ca.pem and DIR/ca-key.pem",
		Long: `Create a certificate authority for a new cluster of several schedulers formed with
--bootstrap-expect: DIR/ca.pem (the CA certificate) and DIR/ca-key.pem (its private key,
unencrypted, readable by its owner only). Every scheduler of the new cluster gets the same two
files; the cluster keeps the CA in its replicated state once formed, after which ca-key.pem
can (and should) be deleted from every machine. Existing files are never overwritten.

A single scheduler started without --ca-cert creates its own CA and needs none of this.`,
		Example: `  orchctl operator ca create --out ./orch-ca
  orch-scheduler --bootstrap-expect 3 --join 10.0.0.1:7400,10.0.0.2:7400,10.0.0.3:7400 \
      --ca-cert ./orch-ca/ca.pem --ca-key ./orch-ca/ca-key.pem`,
		Args: cobra.NoArgs,
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			if dir == "" {
				return usageErrorf("--out", "expected a directory")
			}
			certPath, keyPath := filepath.Join(dir, pki.CACertFile), filepath.Join(dir, pki.CAKeyFile)
			for _, p := range []string{certPath, keyPath} {
				if _, err := os.Lstat(p); err == nil {
					return fmt.Errorf("ca create: %s already exists; remove it first to replace the CA (a cluster formed with it will not accept another)", p)
				} else if !errors.Is(err, fs.ErrNotExist) {
					return fmt.Errorf("ca create: %w", err)
				}
			}
			ca, err := pki.NewCA(name, time.Now())
			if err != nil {
				return fmt.Errorf("ca create: %w", err)
			}
			if _, _, err := ca.WriteFiles(dir); err != nil {
				return fmt.Errorf("ca create: %w", err)
			}
			res := createdCA{ClusterName: name, CACert: certPath, CAKey: keyPath, CADigest: pki.CADigest(ca.Cert), NotAfter: ca.Cert.NotAfter.UTC()}
			out := cmd.OutOrStdout()
			if a.json() {
				b, err := json.MarshalIndent(res, "", "  ")
				if err != nil {
					return err
				}
				_, err = out.Write(append(b, '\n'))
				return err
			}
			w := max(len(certPath), len(keyPath))
			_, err = fmt.Fprintf(out, `Created the CA of cluster %q (valid until %s):
  %-*s  CA certificate: for every scheduler (--ca-cert) and every client (orchctl --ca-cert)
  %-*s  CA private key, unencrypted: keep it secret

Copy both files to each scheduler of the new cluster and start every one of them with them,
for example for 3 schedulers:
  orch-scheduler --bootstrap-expect 3 --join HOST1:7400,HOST2:7400,HOST3:7400 \
      --ca-cert %s --ca-key %s
Once the cluster has formed it keeps the CA in its replicated state: delete ca-key.pem from
every machine.
`, name, res.NotAfter.Format(time.DateOnly), w, certPath, w, keyPath, certPath, keyPath)
			return err
		}),
	}
	cmd.Flags().StringVar(&dir, "out", "", "directory to write ca.pem and ca-key.pem to (created if missing)")
	cmd.Flags().StringVar(&name, "cluster-name", "orch", "cluster name, recorded in the CA and in every certificate it issues")
	cmd.MarkFlagRequired("out")
	return cmd
}
