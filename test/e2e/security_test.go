package e2e

// The secured control plane as a user meets it: orchctl needs the cluster CA and an API
// token, agents enroll with the current worker join token, certificates renew themselves, and
// a sealed snapshot brings the whole cluster, its CA and tokens included, back on a blank
// machine. These tests run in parallel with each other (each has its own processes, ports,
// containerd and namespaces).

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"orch/pkg/pki"
	orchv1 "orch/proto/orch/v1"
	"orch/test/harness"
)

// TestOrchctlCredentials checks what orchctl says when the CA certificate or the API token is
// missing or wrong (a non-zero exit and a message naming what to fix), and that the right
// ones work from flags, the environment and the config file.
func TestOrchctlCredentials(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{schedulerOnly: true})
	ca, token := e.creds.CAFile, e.creds.Token

	// Another cluster's CA, made the way a user makes one.
	otherDir := filepath.Join(t.TempDir(), "other-ca")
	e.orchctlWith(nil, "operator", "ca", "create", "--out", otherDir)
	otherCA := filepath.Join(otherDir, "ca.pem")
	if _, err := os.Stat(otherCA); err != nil {
		t.Fatalf("orchctl operator ca create --out %s wrote no ca.pem: %v", otherDir, err)
	}
	wrongToken, _, err := pki.NewAPIToken()
	if err != nil {
		t.Fatal(err)
	}

	// Exit codes as the AWS CLI's: 253 configuration, 254 the server refused, 255 no connection.
	tests := []struct {
		name string
		env  []string
		args []string
		code int
		want []string // in stderr
	}{
		{name: "no token", args: []string{"--ca-cert", ca}, code: 254, want: []string{"API token is required", "--token"}},
		{name: "no token, CA from env", env: []string{"ORCH_CA_CERT=" + ca}, code: 254, want: []string{"API token is required"}},
		{name: "wrong token", args: []string{"--ca-cert", ca, "--token", wrongToken}, code: 254, want: []string{"API token is not valid"}},
		{name: "no CA certificate", args: []string{"--token", token}, code: 253, want: []string{"CA certificate is required", "--ca-cert"}},
		{name: "another cluster's CA", args: []string{"--ca-cert", otherCA, "--token", token}, code: 255, want: []string{"certificate", "not signed by the CA"}},
		{name: "not a CA certificate", args: []string{"--ca-cert", filepath.Join(e.schedData, "tls", "node.pem"), "--token", token}, code: 253, want: []string{"not a CA certificate"}},
		{name: "missing CA file", args: []string{"--ca-cert", "/nonexistent/ca.pem", "--token", token}, code: 253, want: []string{"/nonexistent/ca.pem"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := e.on(t)
			r := e.orchctlWith(tt.env, append(tt.args, "list-clusters")...)
			if r.code == 0 {
				t.Fatalf("orchctl list-clusters worked: %s", r)
			}
			if r.code != tt.code {
				t.Errorf("exit code %d, want %d: %s", r.code, tt.code, r)
			}
			for _, w := range tt.want {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("stderr does not say %q: %s", w, r)
				}
			}
			if strings.Contains(r.stdout, ":cluster/") {
				t.Errorf("clusters listed anyway: %s", r)
			}
		})
	}

	t.Run("from the environment", func(t *testing.T) {
		e := e.on(t)
		r := e.orchctlWith(e.creds.Env(), "list-clusters")
		if r.code != 0 || !strings.Contains(r.stdout, ":cluster/default") {
			t.Errorf("orchctl with ORCH_CA_CERT and ORCH_TOKEN: %s", r)
		}
	})
	t.Run("from the config file", func(t *testing.T) {
		e := e.on(t)
		cfg := []string{"ORCH_CONFIG=" + filepath.Join(t.TempDir(), "config.json")}
		if r := e.orchctlWith(cfg, "configure", "--ca-cert", ca, "--token", token); r.code != 0 {
			t.Fatalf("orchctl configure: %s", r)
		}
		if r := e.orchctlWith(cfg, "list-clusters"); r.code != 0 || !strings.Contains(r.stdout, ":cluster/default") {
			t.Errorf("orchctl after configure, with no flags: %s", r)
		}
		if r := e.orchctlWith(cfg, "--token", wrongToken, "list-clusters"); r.code == 0 || !strings.Contains(r.stderr, "API token is not valid") {
			t.Errorf("--token does not win over the config file: %s", r)
		}
	})
	t.Run("second bootstrap", func(t *testing.T) {
		e := e.on(t)
		r := e.orchctlWith(nil, "--ca-cert", ca, "operator", "bootstrap-token", "-o", "json")
		if r.code == 0 || !strings.Contains(r.stderr, "bootstrap has been done already") || strings.Contains(r.stdout, "secretId") {
			t.Errorf("a second API bootstrap: want a failure saying it was done already: %s", r)
		}
	})
}

// node is an extra agent machine for an env: its own "host" network namespace, netns dir,
// containerd namespace and ports, sharing the env's containerd.
type node struct {
	hostNS, netnsDir, namespace      string
	dataDir, listenAddr, metricsAddr string
}

// newNode prepares an extra agent machine. Call it before newEnv: its namespaces are then
// removed after the env's processes and containerd are gone.
func newNode(t *testing.T) *node {
	t.Helper()
	harness.RequireRoot(t)
	n := &node{namespace: "orch-" + harness.RandomSuffix(), dataDir: filepath.Join(t.TempDir(), "agent")}
	n.hostNS, n.netnsDir = newHostNS(t)
	return n
}

// start starts an agent on the node (its data dir as it is) serving cluster, enrolling with
// token ("" for none).
func (n *node) start(e *env, cluster, token string) *harness.Process {
	e.t.Helper()
	n.listenAddr, n.metricsAddr = "127.0.0.1:0", "127.0.0.1:0" // any free port: the agent advertises its own
	args := []string{"--scheduler", e.grpcAddr, "--data-dir", n.dataDir, "--containerd", e.ctrd.Address,
		"--namespace", n.namespace, "--listen", n.listenAddr, "--metrics-addr", n.metricsAddr,
		"--netns-dir", n.netnsDir, "--host-netns", "/run/netns/" + n.hostNS, "--cluster", cluster}
	if token != "" {
		args = append(args, "--join-token", token)
	}
	return harness.StartProcess(e.t, e.bins["orch-agent"], cleanEnv, args...)
}

// TestAgentJoinToken checks enrollment as an operator meets it: an agent with a rotated, a
// manager, a malformed or no join token exits with an error naming the join token and never
// registers; the agent enrolled before the rotation keeps working; a new agent enrolls with
// the rotated token and runs tasks.
func TestAgentJoinToken(t *testing.T) {
	t.Parallel()
	second := newNode(t)
	e := newEnv(t, envOpts{})
	e.orchctlOK("create-cluster", "--cluster-name", "blue")
	old := e.creds.WorkerToken
	if !strings.HasPrefix(old, "ORCH1-W-") {
		t.Fatalf("worker join token %q, want ORCH1-W-...", old)
	}
	if r := e.orchctlOK("operator", "join-token", "worker"); strings.TrimSpace(r.stdout) != old {
		t.Errorf("orchctl operator join-token worker printed %q, want %q", r.stdout, old)
	}

	var rotated orchv1.JoinTokens
	e.orchctlJSON(&rotated, "operator", "join-token", "rotate", "worker")
	switch {
	case !strings.HasPrefix(rotated.GetWorker(), "ORCH1-W-") || rotated.GetWorker() == old:
		t.Fatalf("rotate worker: worker token %q, want a new ORCH1-W-... (old %q)", rotated.GetWorker(), old)
	case rotated.GetManager() != e.creds.ManagerToken:
		t.Errorf("rotate worker changed the manager token: %q, want %q", rotated.GetManager(), e.creds.ManagerToken)
	}
	if r := e.orchctlOK("operator", "join-token", "worker"); strings.TrimSpace(r.stdout) != rotated.GetWorker() {
		t.Errorf("after the rotation orchctl operator join-token worker printed %q, want %q", r.stdout, rotated.GetWorker())
	}

	// Refused agents, one after the other on the second node (each with a fresh data dir).
	bad := []struct {
		name, token string
		want        []string // in the agent's output
	}{
		{name: "rotated token", token: old, want: []string{"join token", "refused"}},
		{name: "manager token", token: e.creds.ManagerToken, want: []string{"manager token", "worker token"}},
		{name: "malformed token", token: "ORCH1-W-nonsense", want: []string{"join token", "invalid join token"}},
		{name: "no token", token: "", want: []string{"worker join token is required", "--join-token"}},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			e := e.on(t)
			n := *second
			n.dataDir = filepath.Join(t.TempDir(), "agent")
			p := n.start(e, "blue", tt.token)
			select {
			case <-p.Done():
			case <-time.After(waitTimeout):
				t.Fatalf("the agent with the %s is still running after %s:\n%s", tt.name, waitTimeout, p.Log())
			}
			if p.Wait() == nil {
				t.Errorf("the agent with the %s exited with status 0", tt.name)
			}
			out := p.Log()
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("the agent's output does not say %q:\n%s", w, out)
				}
			}
			if _, err := os.Stat(filepath.Join(n.dataDir, "tls", "node.pem")); err == nil {
				t.Errorf("the agent with the %s saved a certificate", tt.name)
			}
		})
	}
	var list orchv1.ListContainerInstancesResponse
	e.orchctlJSON(&list, "list-container-instances", "--cluster", "blue")
	if len(list.GetContainerInstanceArns()) != 0 {
		t.Fatalf("refused agents registered: %v", list.GetContainerInstanceArns())
	}

	// The agent enrolled with the old token keeps working.
	e.registerTaskDef(`{"family": "idle", "networkMode": "awsvpc", "memory": "64",
  "containerDefinitions": [{"name": "main", "image": "%BUSYBOX%", "essential": true, "stopTimeout": 2}]}`)
	var run orchv1.RunTaskResponse
	e.orchctlJSON(&run, "run-task", "--cluster", "default", "--task-definition", "idle", "--wait")
	e.stopTask("default", taskID(run.GetTasks()[0]))

	// A new agent enrolls with the rotated token.
	second.start(e, "blue", rotated.GetWorker())
	ci := e.waitAgentConnected("blue")
	if first := e.waitAgentConnected("default"); ci.GetEc2InstanceId() == first.GetEc2InstanceId() {
		t.Errorf("the new agent has the host id %s of the first one", ci.GetEc2InstanceId())
	}
	e.orchctlJSON(&run, "run-task", "--cluster", "blue", "--task-definition", "idle", "--wait")
	id := taskID(run.GetTasks()[0])
	if got := run.GetTasks()[0].GetContainerInstanceArn(); got != ci.GetContainerInstanceArn() {
		t.Errorf("task on blue placed on %s, want the new agent %s", got, ci.GetContainerInstanceArn())
	}
	e.waitLogs("blue", id, "idle")
	e.stopTask("blue", id)
}

// readCert reads the certificate in a node's identity file.
func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		t.Fatalf("%s: no PEM", path)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return c
}

// TestCertificateRenewal runs a scheduler issuing 10-second certificates: the agent's and the
// scheduler's certificates are replaced by new ones (new serial, same identity and CA) before
// they expire, and once the first ones have expired the agent is still connected on the same
// session, its task still runs and serves, new tasks run and show their logs (which the
// scheduler fetches from the agent over mutual TLS), and the agent killed and started again
// connects with the renewed certificate it saved.
func TestCertificateRenewal(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{schedulerArgs: []string{"--cert-ttl", "10s"}})
	agentPEM, schedPEM := filepath.Join(e.agentData, "tls", "node.pem"), filepath.Join(e.schedData, "tls", "node.pem")
	agentFirst, schedFirst := readCert(t, agentPEM), readCert(t, schedPEM)
	if life := agentFirst.NotAfter.Sub(agentFirst.NotBefore); life > time.Minute {
		t.Fatalf("the agent's certificate is valid for %s, want about 10s (--cert-ttl 10s)", life)
	}
	e.registerTaskDef(webTaskDef)
	var run orchv1.RunTaskResponse
	e.orchctlJSON(&run, "run-task", "--cluster", "default", "--task-definition", "web", "--wait")
	id := taskID(run.GetTasks()[0])
	ip := attachmentIP(e.describeTask("default", id))
	e.waitHTTP(ip)

	// Past the first certificates' expiry, with margin.
	time.Sleep(time.Until(agentFirst.NotAfter.Add(3 * time.Second)))
	for _, c := range []struct {
		who   string
		path  string
		first *x509.Certificate
	}{{"agent", agentPEM, agentFirst}, {"scheduler", schedPEM, schedFirst}} {
		now := readCert(t, c.path)
		switch {
		case now.SerialNumber.Cmp(c.first.SerialNumber) == 0:
			t.Errorf("the %s's certificate %s was not renewed: serial %s, valid until %s", c.who, c.path, now.SerialNumber, now.NotAfter)
		case now.Subject.CommonName != c.first.Subject.CommonName || now.Issuer.String() != c.first.Issuer.String():
			t.Errorf("the %s's renewed certificate is for %q by %q, want %q by %q", c.who,
				now.Subject.CommonName, now.Issuer, c.first.Subject.CommonName, c.first.Issuer)
		case !now.NotAfter.After(time.Now()):
			t.Errorf("the %s's certificate expired at %s and was not renewed since", c.who, now.NotAfter)
		}
	}
	if !strings.Contains(e.agent.Log(), "renewed certificate saved") {
		t.Errorf("the agent did not log a renewal")
	}

	// Stayed connected: the session opened at the start is still the only one.
	var cis orchv1.DescribeContainerInstancesResponse
	e.orchctlJSON(&cis, "describe-container-instances", "--cluster", "default")
	if len(cis.GetContainerInstances()) != 1 || !cis.GetContainerInstances()[0].GetAgentConnected() {
		t.Errorf("after the renewals: want the one container instance with agentConnected true:\n%s", protojson.Format(&cis))
	}
	if log := e.agent.Log(); strings.Count(log, "scheduler session open") != 1 || strings.Contains(log, "scheduler session ended") {
		t.Errorf("the agent's session to the scheduler did not stay open through the renewals:\n%s", log)
	}
	if got := e.describeTask("default", id); got.GetLastStatus() != "RUNNING" {
		t.Errorf("the task is %s after the renewals, want RUNNING", got.GetLastStatus())
	}
	e.waitHTTP(ip)
	// New connections with the renewed certificates: the scheduler fetches logs from the
	// agent's node API.
	var again orchv1.RunTaskResponse
	e.orchctlJSON(&again, "run-task", "--cluster", "default", "--task-definition", "web", "--wait")
	id2 := taskID(again.GetTasks()[0])
	e.waitLogs("default", id2, "demo-web: serving /var/www on port 80")

	// The renewed certificate was saved: the agent restarted (its first certificate long
	// expired) connects with it, as the same host.
	e.killAgent()
	e.startAgent()
	if got := e.waitAgentConnected("default"); got.GetContainerInstanceArn() != cis.GetContainerInstances()[0].GetContainerInstanceArn() {
		t.Errorf("the restarted agent is container instance %s, want %s", got.GetContainerInstanceArn(), cis.GetContainerInstances()[0].GetContainerInstanceArn())
	}
	e.stopTask("default", id)
	e.stopTask("default", id2)
}

// TestSnapshotRestoreOnBlankServer saves a snapshot sealed with a passphrase, checks that a
// restore with the wrong passphrase fails and changes nothing, then starts a new scheduler on
// an empty data dir from the snapshot: it serves the same clusters, task definitions and join
// tokens, to the old API token, verified by the old CA file.
func TestSnapshotRestoreOnBlankServer(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{schedulerOnly: true})
	e.orchctlOK("create-cluster", "--cluster-name", "snapshot-blue", "--tags", "key=team,value=e2e")
	e.registerTaskDef(`{"family": "snapped", "memory": "64", "containerDefinitions": [{"name": "main", "image": "busybox"}]}`)
	e.registerTaskDef(`{"family": "snapped", "memory": "128", "containerDefinitions": [{"name": "main", "image": "busybox"}]}`)

	type view struct {
		clusters *orchv1.DescribeClustersResponse
		taskDef  *orchv1.DescribeTaskDefinitionResponse
		tdList   *orchv1.ListTaskDefinitionsResponse
		tokens   *orchv1.JoinTokens
	}
	take := func(e *env) view {
		v := view{&orchv1.DescribeClustersResponse{}, &orchv1.DescribeTaskDefinitionResponse{}, &orchv1.ListTaskDefinitionsResponse{}, &orchv1.JoinTokens{}}
		e.orchctlJSON(v.clusters, "describe-clusters", "--clusters", "default", "snapshot-blue")
		e.orchctlJSON(v.taskDef, "describe-task-definition", "--task-definition", "snapped:1")
		e.orchctlJSON(v.tdList, "list-task-definitions", "--status", "ALL")
		e.orchctlJSON(v.tokens, "operator", "join-token", "worker")
		return v
	}
	before := take(e)

	pass := e.writeFile("snapshot.pass", "correct horse battery staple\n")
	snap := filepath.Join(t.TempDir(), "orch.snap")
	e.orchctlOK("operator", "snapshot", "save", snap, "--passphrase-file", pass)
	sealed, err := os.ReadFile(snap)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"snapshot-blue", "PRIVATE KEY", before.tokens.GetWorker()} {
		if bytes.Contains(sealed, []byte(secret)) {
			t.Errorf("the snapshot file holds %q in the clear", secret)
		}
	}
	// Changed after the snapshot: a restore would remove it.
	e.orchctlOK("create-cluster", "--cluster-name", "after-snapshot")

	t.Run("restore with the wrong passphrase", func(t *testing.T) {
		e := e.on(t)
		wrong := e.writeFile("wrong.pass", "not the passphrase\n")
		r := e.orchctl("operator", "snapshot", "restore", snap, "--passphrase-file", wrong, "--yes")
		if r.code == 0 || !strings.Contains(r.stderr, "wrong passphrase") {
			t.Errorf("restore with a wrong passphrase: want a failure naming the passphrase: %s", r)
		}
		if r := e.orchctlOK("list-clusters"); !strings.Contains(r.stdout, ":cluster/after-snapshot\n") {
			t.Errorf("the failed restore changed the state: %s", r)
		}
	})

	// The first machine is gone; a blank one starts from the snapshot.
	e.killScheduler()
	restored := e.on(t)
	addr := func() string { return fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t)) }
	restored.grpcAddr, restored.httpAddr, restored.raftAddr = addr(), addr(), addr()
	restored.schedData = filepath.Join(t.TempDir(), "restored")
	startRestored := func(passFile string) *harness.Process {
		return harness.StartProcess(t, e.bins["orch-scheduler"], cleanEnv, "--data-dir", restored.schedData,
			"--grpc-addr", restored.grpcAddr, "--http-addr", restored.httpAddr, "--raft-addr", restored.raftAddr,
			"--restore", snap, "--snapshot-passphrase-file", passFile)
	}

	t.Run("start from a snapshot with the wrong passphrase", func(t *testing.T) {
		p := startRestored(e.writeFile("wrong.pass", "not the passphrase\n"))
		select {
		case <-p.Done():
		case <-time.After(waitTimeout):
			t.Fatalf("orch-scheduler --restore with a wrong passphrase is still running")
		}
		if p.Wait() == nil || !strings.Contains(p.Log(), "wrong passphrase") {
			t.Errorf("orch-scheduler --restore with a wrong passphrase: want a non-zero exit and a message naming the passphrase; %v:\n%s", p.Wait(), p.Log())
		}
		if _, err := os.Stat(harness.CAFilePath(restored.schedData)); err == nil {
			t.Errorf("the failed start wrote %s", harness.CAFilePath(restored.schedData))
		}
	})

	restored.sched = startRestored(pass)
	restoredCA := harness.CAFilePath(restored.schedData)
	deadline := time.Now().Add(waitTimeout)
	for {
		if _, err := os.Stat(restoredCA); err == nil {
			break
		}
		if restored.sched.Exited() || time.Now().After(deadline) {
			t.Fatalf("the restored scheduler did not write %s (exited: %v)", restoredCA, restored.sched.Exited())
		}
		time.Sleep(pollEvery)
	}
	oldCA, _ := os.ReadFile(e.creds.CAFile)
	if newCA, _ := os.ReadFile(restoredCA); !bytes.Equal(newCA, oldCA) {
		t.Errorf("the restored scheduler's ca.pem is not the CA of the snapshot")
	}
	// restored.orchctl uses the OLD CA file and API token (restored.creds is e.creds).
	restored.waitCluster("snapshot-blue")
	after := take(restored)
	for _, c := range []struct {
		what string
		a, b proto.Message
	}{
		{"describe-clusters", before.clusters, after.clusters},
		{"describe-task-definition", before.taskDef, after.taskDef},
		{"list-task-definitions", before.tdList, after.tdList},
		{"join tokens", before.tokens, after.tokens},
	} {
		if !proto.Equal(c.a, c.b) {
			t.Errorf("%s differs on the restored scheduler:\nbefore:   %s\nrestored: %s", c.what, protojson.Format(c.a), protojson.Format(c.b))
		}
	}
	if r := restored.orchctlOK("list-clusters"); strings.Contains(r.stdout, "after-snapshot") {
		t.Errorf("the restored scheduler has a cluster created after the snapshot: %s", r)
	}
	restored.orchctlOK("create-cluster", "--cluster-name", "after-restore")
	if r := restored.orchctlWith(nil, "--ca-cert", e.creds.CAFile, "operator", "bootstrap-token"); r.code == 0 {
		t.Errorf("the API bootstrap worked again on the restored scheduler: %s", r)
	}
}
