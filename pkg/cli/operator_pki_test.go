package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"orch/pkg/pki"
	orchv1 "orch/proto/orch/v1"
)

func TestJoinTokenCommands(t *testing.T) {
	const (
		worker  = "ORCH1-W-aaaa-bbbb"
		manager = "ORCH1-M-aaaa-cccc"
		worker2 = "ORCH1-W-aaaa-dddd"
	)
	tokens := &orchv1.JoinTokens{Worker: worker, Manager: manager, CaDigest: "aaaa"}
	get := []call{{"GetJoinTokens", &orchv1.GetJoinTokensRequest{}}}
	runUnaryCases(t, []unaryCase{
		{
			name: "worker", args: []string{"operator", "join-token", "worker"},
			responses: map[string]proto.Message{"GetJoinTokens": tokens}, wantCalls: get, wantOut: str(worker + "\n"),
		},
		{
			name: "manager", args: []string{"operator", "join-token", "manager"},
			responses: map[string]proto.Message{"GetJoinTokens": tokens}, wantCalls: get, wantOut: str(manager + "\n"),
		},
		{
			name: "json", args: []string{"operator", "join-token", "worker", "-o", "json"},
			responses: map[string]proto.Message{"GetJoinTokens": tokens}, wantCalls: get,
			wantOut: str("{\n  \"worker\": \"" + worker + "\",\n  \"manager\": \"" + manager + "\",\n  \"caDigest\": \"aaaa\"\n}\n"),
		},
		{
			name: "no tokens yet", args: []string{"operator", "join-token", "worker"}, wantCalls: get,
			wantCode: 255, errHas: []string{"the cluster has no worker join token yet"},
		},
		{
			name: "denied", args: []string{"operator", "join-token", "manager"}, wantCalls: get,
			errs:     map[string]error{"GetJoinTokens": status.Error(codes.Unauthenticated, "API token required")},
			wantCode: 254, errHas: []string{"An error occurred (Unauthenticated) when calling the GetJoinTokens operation: API token required"},
		},
		{name: "no kind", args: []string{"operator", "join-token"}, wantCode: 252,
			errHas: []string{"argument KIND: choose worker (enrolls an agent) or manager (enrolls a scheduler)", "See 'orchctl operator join-token --help'."}},
		{name: "bad kind", args: []string{"operator", "join-token", "workers"}, wantCode: 252,
			errHas: []string{`argument KIND: invalid choice: "workers" (choose from worker, manager)`}},
		{
			name: "rotate worker", args: []string{"operator", "join-token", "rotate", "worker"},
			responses: map[string]proto.Message{"RotateJoinToken": &orchv1.JoinTokens{Worker: worker2, Manager: manager}},
			wantCalls: []call{{"RotateJoinToken", &orchv1.RotateJoinTokenRequest{Kind: "worker"}}},
			wantOut: str("Rotated the worker join token: the old one no longer enrolls anything (nodes already enrolled keep their certificates).\n" +
				"KIND    TOKEN\n" +
				"worker  " + worker2 + "\n"),
		},
		{
			name: "rotate both", args: []string{"operator", "join-token", "rotate"},
			responses: map[string]proto.Message{"RotateJoinToken": &orchv1.JoinTokens{Worker: worker2, Manager: manager}},
			wantCalls: []call{{"RotateJoinToken", &orchv1.RotateJoinTokenRequest{}}},
			wantOut: str("Rotated the worker and manager join tokens: the old ones no longer enroll anything (nodes already enrolled keep their certificates).\n" +
				"KIND     TOKEN\n" +
				"worker   " + worker2 + "\n" +
				"manager  " + manager + "\n"),
		},
		{
			name: "rotate json", args: []string{"operator", "join-token", "rotate", "manager", "-o", "json"},
			responses: map[string]proto.Message{"RotateJoinToken": &orchv1.JoinTokens{Manager: manager}},
			wantCalls: []call{{"RotateJoinToken", &orchv1.RotateJoinTokenRequest{Kind: "manager"}}},
			wantOut:   str("{\n  \"manager\": \"" + manager + "\"\n}\n"),
		},
		{name: "rotate bad kind", args: []string{"operator", "join-token", "rotate", "agents"}, wantCode: 252, errHas: []string{`invalid choice: "agents"`}},
		{name: "rotate two kinds", args: []string{"operator", "join-token", "rotate", "worker", "manager"}, wantCode: 252, errHas: []string{"takes one kind"}},
		{
			name: "bootstrap-token", args: []string{"operator", "bootstrap-token"},
			responses: map[string]proto.Message{"BootstrapToken": &orchv1.BootstrapTokenResponse{AccessorId: "acc-1", SecretId: "orch_secret"}},
			wantCalls: []call{{"BootstrapToken", &orchv1.BootstrapTokenRequest{}}},
			wantOut:   str("ACCESSOR  SECRET\nacc-1     orch_secret\n"),
		},
		{name: "bootstrap-token help", args: []string{"operator", "bootstrap-token", "--help"},
			outHas: []string{"shown\nthis once", "orchctl configure --token"}},
		{name: "operator help lists the new commands", args: []string{"operator", "--help"},
			outHas: []string{"join-token", "ca ", "bootstrap-token", "snapshot"}},
	})
}

func TestCACreate(t *testing.T) {
	t.Run("create", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "orch-ca") // created by the command
		res := orchctl(t, "", "", "operator", "ca", "create", "--out", dir, "--cluster-name", "prod")
		if res.code != 0 {
			t.Fatalf("exit code %d\nstderr:\n%s", res.code, res.stderr)
		}
		certFile, keyFile := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca-key.pem")
		for _, s := range []string{`Created the CA of cluster "prod"`, certFile, keyFile,
			"orch-scheduler --bootstrap-expect 3 --join HOST1:7400,HOST2:7400,HOST3:7400 \\\n      --ca-cert " + certFile + " --ca-key " + keyFile,
			"delete ca-key.pem"} {
			if !strings.Contains(res.stdout, s) {
				t.Errorf("stdout lacks %q:\n%s", s, res.stdout)
			}
		}
		certPEM, err := os.ReadFile(certFile)
		if err != nil {
			t.Fatal(err)
		}
		keyPEM, err := os.ReadFile(keyFile)
		if err != nil {
			t.Fatal(err)
		}
		// The two files are the CA: together they are what MarshalPlain makes.
		ca, err := pki.UnmarshalPlain(append(append([]byte{}, certPEM...), keyPEM...))
		if err != nil {
			t.Fatalf("the files are not a CA: %v", err)
		}
		if ca.ClusterName() != "prod" || !ca.Cert.IsCA {
			t.Errorf("CA of cluster %q, IsCA %v", ca.ClusterName(), ca.Cert.IsCA)
		}
		if strings.Contains(string(certPEM), "PRIVATE KEY") {
			t.Error("ca.pem holds the private key")
		}
		if st, _ := os.Stat(keyFile); st.Mode().Perm() != 0o600 {
			t.Errorf("ca-key.pem mode %v, want 0600", st.Mode().Perm())
		}
		// It issues certificates that verify against ca.pem.
		_, csr, _ := pki.NewKeyAndCSR("s1")
		if _, err := ca.Issue(csr, "s1", pki.RoleScheduler, nil, time.Hour, time.Now()); err != nil {
			t.Errorf("issue: %v", err)
		}

		// A second create refuses to overwrite, and changes nothing.
		res = orchctl(t, "", "", "operator", "ca", "create", "--out", dir)
		if res.code != 255 || !strings.Contains(res.stderr, certFile+" already exists") {
			t.Errorf("second create: exit code %d, stderr:\n%s", res.code, res.stderr)
		}
		if again, _ := os.ReadFile(keyFile); string(again) != string(keyPEM) {
			t.Error("second create changed ca-key.pem")
		}
	})
	t.Run("key exists", func(t *testing.T) {
		dir := t.TempDir()
		keyFile := filepath.Join(dir, "ca-key.pem")
		if err := os.WriteFile(keyFile, []byte("old"), 0o600); err != nil {
			t.Fatal(err)
		}
		res := orchctl(t, "", "", "operator", "ca", "create", "--out", dir)
		if res.code != 255 || !strings.Contains(res.stderr, keyFile+" already exists") {
			t.Errorf("exit code %d, stderr:\n%s", res.code, res.stderr)
		}
		if _, err := os.Stat(filepath.Join(dir, "ca.pem")); !os.IsNotExist(err) {
			t.Errorf("ca.pem written next to an existing key: %v", err)
		}
	})
	t.Run("json", func(t *testing.T) {
		dir := t.TempDir()
		res := orchctl(t, "", "", "operator", "ca", "create", "--out", dir, "-o", "json")
		if res.code != 0 {
			t.Fatalf("exit code %d\nstderr:\n%s", res.code, res.stderr)
		}
		var got createdCA
		if err := json.Unmarshal([]byte(res.stdout), &got); err != nil {
			t.Fatalf("%v:\n%s", err, res.stdout)
		}
		certPEM, _ := os.ReadFile(filepath.Join(dir, "ca.pem"))
		cert, err := pki.ParseCertificatePEM(certPEM)
		if err != nil {
			t.Fatal(err)
		}
		if got.ClusterName != "orch" || got.CACert != filepath.Join(dir, "ca.pem") || got.CADigest != pki.CADigest(cert) {
			t.Errorf("output %+v", got)
		}
	})
	t.Run("no --out", func(t *testing.T) {
		res := orchctl(t, "", "", "operator", "ca", "create")
		if res.code != 252 || !strings.Contains(res.stderr, `required flag(s) "out" not set`) {
			t.Errorf("exit code %d, stderr:\n%s", res.code, res.stderr)
		}
	})
}
