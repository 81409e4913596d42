package cli

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"google.golang.org/grpc/metadata"

	"orch/pkg/client"
	"orch/pkg/pki"
	orchv1 "orch/proto/orch/v1"
)

func TestResolve(t *testing.T) {
	fixed := func(source, v string) layer {
		return layer{source: source, location: source + "-loc", get: func(string) string { return v }}
	}
	tests := []struct {
		name   string
		def    string
		layers []layer
		want   setting
	}{
		{"flag beats all", "d", []layer{fixed("flag", "f"), fixed("env", "e"), fixed("config", "c")}, setting{"f", "flag", "flag-loc"}},
		{"env beats config", "d", []layer{fixed("flag", ""), fixed("env", "e"), fixed("config", "c")}, setting{"e", "env", "env-loc"}},
		{"config beats default", "d", []layer{fixed("flag", ""), fixed("env", ""), fixed("config", "c")}, setting{"c", "config", "config-loc"}},
		{"default", "d", []layer{fixed("flag", ""), fixed("env", ""), fixed("config", "")}, setting{"d", "default", ""}},
		{"no default", "", []layer{fixed("flag", ""), fixed("env", "")}, setting{}},
		{"blank values skipped", "d", []layer{fixed("flag", "  "), fixed("env", " , "), fixed("config", "c")}, setting{"c", "config", "config-loc"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := resolve("k", tt.def, tt.layers...); got != tt.want {
				t.Errorf("resolve = %+v, want %+v", got, tt.want)
			}
		})
	}
}

// writeConfigFile writes a config file and points $ORCH_CONFIG at it for the test.
func writeConfigFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.json")
	if content != "" {
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv(EnvConfig, p)
	return p
}

func TestSettingsPrecedence(t *testing.T) {
	ca := testPKI.caFile
	cfgJSON := `{"endpoint": "cfg:7400", "token": "orch_cfgtoken1234", "caCert": "/cfg/ca.pem"}`
	type env struct{ addr, token, ca string }
	tests := []struct {
		name     string
		config   string // config file content; empty: no file
		env      env
		flags    []string
		endpoint setting
		token    setting
		caCert   setting
	}{
		{
			name:     "defaults",
			env:      env{ca: ""},
			endpoint: setting{client.DefaultEndpoint, "default", ""},
		},
		{
			name:     "config file",
			config:   cfgJSON,
			endpoint: setting{"cfg:7400", "config", "CONFIG"},
			token:    setting{"****************1234", "config", "CONFIG"},
			caCert:   setting{"/cfg/ca.pem", "config", "CONFIG"},
		},
		{
			name:     "env beats config file",
			config:   cfgJSON,
			env:      env{"env:7400", "orch_envtoken5678", ca},
			endpoint: setting{"env:7400", "env", client.EnvEndpoints},
			token:    setting{"****************5678", "env", client.EnvToken},
			caCert:   setting{ca, "env", client.EnvCACert},
		},
		{
			name:     "flags beat env",
			config:   cfgJSON,
			env:      env{"env:7400", "orch_envtoken5678", ca},
			flags:    []string{"--endpoint", "flag:7400", "--token", "orch_flagtoken9999", "--ca-cert", "/flag/ca.pem"},
			endpoint: setting{"flag:7400", "flag", "--endpoint"},
			token:    setting{"****************9999", "flag", "--token"},
			caCert:   setting{"/flag/ca.pem", "flag", "--ca-cert"},
		},
		{
			name:     "empty flags fall through",
			config:   cfgJSON,
			env:      env{addr: "env:7400"},
			flags:    []string{"--endpoint", "", "--token", "", "--ca-cert", ""},
			endpoint: setting{"env:7400", "env", client.EnvEndpoints},
			token:    setting{"****************1234", "config", "CONFIG"},
			caCert:   setting{"/cfg/ca.pem", "config", "CONFIG"},
		},
		{
			name:     "partial config file",
			config:   `{"token": "short", "future": {"x": 1}}`,
			endpoint: setting{client.DefaultEndpoint, "default", ""},
			token:    setting{"*****", "config", "CONFIG"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeConfigFile(t, tt.config)
			t.Setenv(client.EnvEndpoints, tt.env.addr)
			t.Setenv(client.EnvToken, tt.env.token)
			t.Setenv(client.EnvCACert, tt.env.ca)
			res := orchctl(t, "", "", append([]string{"configure", "list", "-o", "json"}, tt.flags...)...)
			if res.code != 0 {
				t.Fatalf("exit code %d\nstderr:\n%s", res.code, res.stderr)
			}
			var got settings
			if err := json.Unmarshal([]byte(res.stdout), &got); err != nil {
				t.Fatalf("%v:\n%s", err, res.stdout)
			}
			fix := func(s setting) setting {
				s.Location = strings.ReplaceAll(s.Location, "CONFIG", path)
				return s
			}
			want := settings{ConfigFile: path, Endpoint: fix(tt.endpoint), Token: fix(tt.token), CACert: fix(tt.caCert)}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("settings\n got %+v\nwant %+v", got, want)
			}
		})
	}
}

// TestSettingsUsed checks that commands connect with the settings of the config file, and
// that the environment and flags override them.
func TestSettingsUsed(t *testing.T) {
	var gotAuth string
	f := &fakeOrch{ListClustersFn: func(ctx context.Context, _ *orchv1.ListClustersRequest) (*orchv1.ListClustersResponse, error) {
		md, _ := metadata.FromIncomingContext(ctx)
		gotAuth = strings.Join(md.Get("authorization"), ",")
		return &orchv1.ListClustersResponse{ClusterArns: []string{"arn:c/default"}}, nil
	}}
	up := serve(t, f)
	notCert := writeTemp(t, "not-a-cert.pem", []byte("hello\n"))
	tests := []struct {
		name     string
		config   map[string]string
		env      map[string]string
		flags    []string
		wantAuth string
		wantCode int
		errHas   string
	}{
		{name: "all from the config file", config: map[string]string{"endpoint": up, "token": "orch_cfg", "caCert": testPKI.caFile}, wantAuth: "Bearer orch_cfg"},
		{name: "env token beats config", config: map[string]string{"endpoint": up, "token": "orch_cfg", "caCert": testPKI.caFile},
			env: map[string]string{client.EnvToken: "orch_env"}, wantAuth: "Bearer orch_env"},
		{name: "flag token beats env", config: map[string]string{"endpoint": up, "caCert": testPKI.caFile},
			env: map[string]string{client.EnvToken: "orch_env"}, flags: []string{"--token", "orch_flag"}, wantAuth: "Bearer orch_flag"},
		{name: "flag endpoint beats config", config: map[string]string{"endpoint": "127.0.0.1:1", "caCert": testPKI.caFile},
			flags: []string{"--endpoint", up}},
		{name: "no CA anywhere", config: map[string]string{"endpoint": up}, wantCode: 253,
			errHas: "a CA certificate is required to verify the scheduler (--ca-cert or ORCH_CA_CERT; each scheduler writes it to <data-dir>/ca.pem); to save it for later commands: orchctl configure --ca-cert FILE"},
		{name: "CA file of the config file missing", config: map[string]string{"endpoint": up, "caCert": "/nonexistent/ca.pem"}, wantCode: 253,
			errHas: "CA certificate file /nonexistent/ca.pem: no such file or directory (from config file "},
		{name: "CA flag not a certificate", config: map[string]string{"endpoint": up}, flags: []string{"--ca-cert", notCert}, wantCode: 253,
			errHas: "CA certificate file " + notCert + ": parse certificate: no CERTIFICATE PEM block (from --ca-cert)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := json.Marshal(tt.config)
			if err != nil {
				t.Fatal(err)
			}
			writeConfigFile(t, string(b))
			t.Setenv(client.EnvCACert, "")
			t.Setenv(client.EnvEndpoints, "")
			t.Setenv(client.EnvToken, "")
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			gotAuth = ""
			res := orchctl(t, "", "", append([]string{"list-clusters"}, tt.flags...)...)
			if res.code != tt.wantCode {
				t.Fatalf("exit code %d, want %d\nstdout:\n%s\nstderr:\n%s", res.code, tt.wantCode, res.stdout, res.stderr)
			}
			if !strings.Contains(res.stderr, tt.errHas) {
				t.Errorf("stderr lacks %q:\n%s", tt.errHas, res.stderr)
			}
			if tt.wantCode == 0 && gotAuth != tt.wantAuth {
				t.Errorf("authorization %q, want %q", gotAuth, tt.wantAuth)
			}
		})
	}
}

func TestWrongCA(t *testing.T) {
	other, err := pki.NewCA("other", testPKI.ca.Cert.NotBefore)
	if err != nil {
		t.Fatal(err)
	}
	otherFile := writeTemp(t, "other-ca.pem", other.CertPEM)
	addr := serve(t, &fakeOrch{})
	res := orchctl(t, addr, "", "list-clusters", "--ca-cert", otherFile)
	if res.code != 255 || !strings.Contains(res.stderr, "Could not connect to a scheduler: endpoint "+addr+": TLS handshake: the scheduler's certificate is not signed by the CA certificate given") {
		t.Errorf("exit code %d, stderr:\n%s", res.code, res.stderr)
	}
}

func TestBadConfigFile(t *testing.T) {
	path := writeConfigFile(t, `{"endpoint": `)
	res := orchctl(t, "", "", "list-clusters")
	if res.code != 253 || !strings.Contains(res.stderr, "config file "+path+": unexpected end of JSON input") {
		t.Errorf("exit code %d, stderr:\n%s", res.code, res.stderr)
	}
	writeConfigFile(t, `{"endpoint": 7400}`)
	res = orchctl(t, "", "", "configure", "list")
	if res.code != 253 || !strings.Contains(res.stderr, `"endpoint": json: cannot unmarshal number`) {
		t.Errorf("exit code %d, stderr:\n%s", res.code, res.stderr)
	}
}

func TestConfigure(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "config.json") // the directory is created
	t.Setenv(EnvConfig, path)
	for _, k := range []string{client.EnvEndpoints, client.EnvToken, client.EnvCACert} {
		t.Setenv(k, "")
	}
	// A relative CA path is saved as an absolute one.
	notCert := writeTemp(t, "not-a-cert.pem", []byte("hello\n"))
	t.Chdir(filepath.Dir(testPKI.caFile))

	read := func() map[string]any {
		t.Helper()
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("config file mode %v, want 0600", st.Mode().Perm())
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]any{}
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("%v:\n%s", err, b)
		}
		return m
	}
	steps := []struct {
		name     string
		args     []string
		wantCode int
		outHas   string
		errHas   string
		want     map[string]any // config file after the step
	}{
		{name: "endpoint and CA", args: []string{"--endpoint", "10.0.0.1:7400", "--ca-cert", "ca.pem"},
			outHas: "Saved endpoint, ca-cert to " + path,
			want:   map[string]any{"endpoint": "10.0.0.1:7400", "caCert": testPKI.caFile}},
		{name: "token merges", args: []string{"--token", "orch_secret_token_abcd"},
			outHas: "Saved token to " + path,
			want:   map[string]any{"endpoint": "10.0.0.1:7400", "caCert": testPKI.caFile, "token": "orch_secret_token_abcd"}},
		{name: "missing CA refused", args: []string{"--ca-cert", "/nonexistent/ca.pem", "--endpoint", "x:1"}, wantCode: 255,
			errHas: "--ca-cert: open /nonexistent/ca.pem: no such file or directory",
			want:   map[string]any{"endpoint": "10.0.0.1:7400", "caCert": testPKI.caFile, "token": "orch_secret_token_abcd"}},
		{name: "not a CA refused", args: []string{"--ca-cert", notCert}, wantCode: 255, errHas: "no CERTIFICATE PEM block",
			want: map[string]any{"endpoint": "10.0.0.1:7400", "caCert": testPKI.caFile, "token": "orch_secret_token_abcd"}},
		{name: "empty value removes", args: []string{"--endpoint", ""}, outHas: "Removed endpoint from " + path,
			want: map[string]any{"caCert": testPKI.caFile, "token": "orch_secret_token_abcd"}},
		{name: "nothing to save", wantCode: 252, errHas: "nothing to save: give --endpoint, --token or --ca-cert",
			want: map[string]any{"caCert": testPKI.caFile, "token": "orch_secret_token_abcd"}},
		{name: "unknown argument", args: []string{"lst"}, wantCode: 252, errHas: `unknown command "lst" for "orchctl configure"`,
			want: map[string]any{"caCert": testPKI.caFile, "token": "orch_secret_token_abcd"}},
	}
	for _, st := range steps {
		res := orchctl(t, "", "", append([]string{"configure"}, st.args...)...)
		if res.code != st.wantCode {
			t.Fatalf("%s: exit code %d, want %d\nstdout:\n%s\nstderr:\n%s", st.name, res.code, st.wantCode, res.stdout, res.stderr)
		}
		if !strings.Contains(res.stdout, st.outHas) || !strings.Contains(res.stderr, st.errHas) {
			t.Errorf("%s: stdout %q, stderr %q; want %q and %q", st.name, res.stdout, res.stderr, st.outHas, st.errHas)
		}
		if got := read(); !reflect.DeepEqual(got, st.want) {
			t.Errorf("%s: config file %v, want %v", st.name, got, st.want)
		}
	}

	// Keys a later version writes survive a configure.
	if err := os.WriteFile(path, []byte(`{"token": "orch_secret_token_abcd", "profile": {"name": "x"}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if res := orchctl(t, "", "", "configure", "--endpoint", "h:1"); res.code != 0 {
		t.Fatalf("exit code %d: %s", res.code, res.stderr)
	}
	want := map[string]any{"token": "orch_secret_token_abcd", "endpoint": "h:1", "profile": map[string]any{"name": "x"}}
	if got := read(); !reflect.DeepEqual(got, want) { // read checks 0600 too
		t.Errorf("config file %v, want %v", got, want)
	}

	res := orchctl(t, "", "", "configure", "list")
	wantOut := "Config file: " + path + "\n" +
		"NAME      VALUE                 SOURCE  LOCATION\n" +
		"endpoint  h:1                   config  " + path + "\n" +
		"token     ****************abcd  config  " + path + "\n" +
		"ca-cert   <not set>             -       -\n"
	if res.code != 0 || res.stdout != wantOut {
		t.Errorf("configure list: exit code %d\n got:\n%s\nwant:\n%s\nstderr:\n%s", res.code, res.stdout, wantOut, res.stderr)
	}
	if strings.Contains(res.stdout, "secret") {
		t.Error("configure list shows the token")
	}
	t.Setenv(EnvConfig, filepath.Join(dir, "none.json"))
	res = orchctl(t, "", "", "configure", "list")
	if !strings.HasPrefix(res.stdout, "Config file: "+filepath.Join(dir, "none.json")+" (not created yet)\n") {
		t.Errorf("configure list without a file:\n%s", res.stdout)
	}
}
