package pki

import (
	"errors"
	"regexp"
	"strings"
	"testing"
)

var tokenRE = regexp.MustCompile(`^ORCH1-[MW]-[a-z2-7]{52}-[a-z2-7]{26}$`)

func TestJoinTokenFormatAndParse(t *testing.T) {
	ca := newTestCA(t, "prod")
	for _, kind := range []TokenKind{KindManager, KindWorker} {
		t.Run(string(kind), func(t *testing.T) {
			tok, hash, err := NewJoinToken(kind, ca.Cert)
			if err != nil {
				t.Fatal(err)
			}
			if !tokenRE.MatchString(tok) {
				t.Fatalf("token %q does not match %s", tok, tokenRE)
			}
			for _, spelling := range []string{tok, " " + tok + "\n", strings.ToUpper(tok)} {
				jt, err := ParseJoinToken(spelling)
				if err != nil {
					t.Fatalf("ParseJoinToken(%q): %v", spelling, err)
				}
				if jt.Kind != kind || jt.CADigest != CADigest(ca.Cert) || !jt.PinsCA(ca.Cert) {
					t.Fatalf("parsed %+v", jt)
				}
				if jt.String() != tok {
					t.Fatalf("String() = %q, want %q", jt.String(), tok)
				}
				if !jt.Matches(hash) {
					t.Fatal("token does not match its own hash")
				}
			}
		})
	}
	if _, _, err := NewJoinToken("X", ca.Cert); err == nil {
		t.Fatal("NewJoinToken with kind X succeeded")
	}
	if _, _, err := NewJoinToken(KindWorker, nil); err == nil {
		t.Fatal("NewJoinToken without a CA succeeded")
	}
}

func TestParseJoinTokenErrors(t *testing.T) {
	ca := newTestCA(t, "prod")
	tok, _, err := NewJoinToken(KindWorker, ca.Cert)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(tok, "-")
	digest, secret := parts[2], parts[3]
	for _, tc := range []struct {
		name, token, want string
	}{
		{"empty", "", "does not start with"},
		{"swarm token", "SWMTKN-1-" + digest + "-" + secret, "does not start with"},
		{"api token", "orch_" + digest, "does not start with"},
		{"missing secret", "ORCH1-W-" + digest, "want 4"},
		{"extra part", tok + "-x", "want 4"},
		{"lowercase kind", "ORCH1-w-" + digest + "-" + secret, "kind"},
		{"unknown kind", "ORCH1-A-" + digest + "-" + secret, "kind"},
		{"short digest", "ORCH1-W-" + digest[:51] + "-" + secret, "CA digest has 51"},
		{"digest alphabet", "ORCH1-W-" + digest[:51] + "1-" + secret, "CA digest"},
		{"digest non-canonical", "ORCH1-W-" + digest[:51] + nonCanonical(digest[51]) + "-" + secret, "non-canonical"},
		{"long secret", "ORCH1-W-" + digest + "-" + secret + "a", "secret has 27"},
		{"secret alphabet", "ORCH1-W-" + digest + "-" + secret[:25] + "0", "secret"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseJoinToken(tc.token)
			if !errors.Is(err, ErrInvalidToken) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want ErrInvalidToken mentioning %q", err, tc.want)
			}
			if err != nil && strings.Contains(err.Error(), secret) {
				t.Fatal("error echoes the secret")
			}
		})
	}
}

// nonCanonical returns a base32 character that differs from c only in the bits a 32-byte
// value leaves unused in its last character.
func nonCanonical(c byte) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz234567"
	i := strings.IndexByte(alphabet, c)
	return string(alphabet[i^1])
}

func TestJoinTokenMatches(t *testing.T) {
	ca := newTestCA(t, "prod")
	mgr, mgrHash, err := NewJoinToken(KindManager, ca.Cert)
	if err != nil {
		t.Fatal(err)
	}
	wrk, wrkHash, err := NewJoinToken(KindWorker, ca.Cert)
	if err != nil {
		t.Fatal(err)
	}
	rotated, _, err := NewJoinToken(KindWorker, ca.Cert)
	if err != nil {
		t.Fatal(err)
	}
	parse := func(s string) JoinToken {
		jt, err := ParseJoinToken(s)
		if err != nil {
			t.Fatal(err)
		}
		return jt
	}
	relabelled := parse(wrk)
	relabelled.Kind = KindManager
	flipped := parse(mgr)
	flipped.Secret[0] ^= 1
	for _, tc := range []struct {
		name string
		tok  JoinToken
		hash []byte
		want bool
	}{
		{"manager", parse(mgr), mgrHash, true},
		{"worker", parse(wrk), wrkHash, true},
		{"worker against manager hash", parse(wrk), mgrHash, false},
		{"worker relabelled as manager", relabelled, mgrHash, false},
		{"worker relabelled, own hash", relabelled, wrkHash, false},
		{"old token after rotation", parse(rotated), wrkHash, false},
		{"secret flipped", flipped, mgrHash, false},
		{"empty hash", parse(mgr), nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.tok.Matches(tc.hash); got != tc.want {
				t.Fatalf("Matches = %v, want %v", got, tc.want)
			}
		})
	}
	if parse(mgr).PinsCA(newTestCA(t, "other").Cert) {
		t.Fatal("token pins another cluster's CA")
	}
	if KindManager.Role() != RoleScheduler || KindWorker.Role() != RoleAgent {
		t.Fatal("kind roles")
	}
}

func TestAPIToken(t *testing.T) {
	tok, hash, err := NewAPIToken()
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^orch_[a-z2-7]{52}$`).MatchString(tok) {
		t.Fatalf("API token %q has the wrong shape", tok)
	}
	if string(HashToken(tok)) != string(hash) {
		t.Fatal("HashToken differs from the hash NewAPIToken returned")
	}
	other, otherHash, err := NewAPIToken()
	if err != nil {
		t.Fatal(err)
	}
	if other == tok || string(otherHash) == string(hash) {
		t.Fatal("two API tokens are equal")
	}
	for _, tc := range []struct {
		s    string
		want bool
	}{
		{tok, true},
		{"orch_", false},
		{tok[:len(tok)-1], false},
		{strings.TrimPrefix(tok, "orch_"), false},
		{"ORCH1-W-x-y", false},
	} {
		if got := IsAPIToken(tc.s); got != tc.want {
			t.Errorf("IsAPIToken(%q) = %v, want %v", tc.s, got, tc.want)
		}
	}
}
