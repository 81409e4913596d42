package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestResolveJoinToken(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "token")
	if err := os.WriteFile(file, []byte("ORCH1-W-from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	enrolled := t.TempDir()
	if err := os.MkdirAll(filepath.Join(enrolled, "tls"), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"ca.pem", "node.pem", "node-key.pem"} {
		if err := os.WriteFile(filepath.Join(enrolled, "tls", n), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name               string
		dataDir, flag, env string
		file               string
		want               string
		wantErr            string
	}{
		{"flag wins over file and env", dir, " ORCH1-W-flag ", "ORCH1-W-env", file, "ORCH1-W-flag", ""},
		{"file wins over env", dir, "", "ORCH1-W-env", file, "ORCH1-W-from-file", ""},
		{"env when neither", dir, "", " ORCH1-W-env\n", "", "ORCH1-W-env", ""},
		{"nothing", dir, "", "", "", "", ""},
		{"missing file before enrolling", dir, "", "ORCH1-W-env", filepath.Join(dir, "gone"), "", "--join-token-file"},
		{"missing file after enrolling", enrolled, "", "", filepath.Join(dir, "gone"), "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(envJoinToken, tc.env)
			got, err := resolveJoinToken(tc.dataDir, tc.flag, tc.file)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one mentioning %s", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("= %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}
