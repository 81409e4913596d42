package pki

import (
	"bytes"
	"errors"
	"testing"
)

func TestSealOpenRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name      string
		plaintext []byte
	}{
		{"empty", nil},
		{"short", []byte("hello")},
		{"large", bytes.Repeat([]byte("orch snapshot "), 100_000)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pass := []byte("correct horse battery staple")
			sealed, err := Seal(tc.plaintext, pass)
			if err != nil {
				t.Fatalf("Seal: %v", err)
			}
			if len(tc.plaintext) > 0 && bytes.Contains(sealed, tc.plaintext) {
				t.Fatal("sealed output contains the plaintext")
			}
			got, err := Open(sealed, pass)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			if !bytes.Equal(got, tc.plaintext) {
				t.Fatalf("Open returned %d bytes, want %d", len(got), len(tc.plaintext))
			}
		})
	}
}

func TestSealFreshSaltAndNonce(t *testing.T) {
	a, err := Seal([]byte("x"), []byte("p"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := Seal([]byte("x"), []byte("p"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(a, b) {
		t.Fatal("two seals of the same plaintext are identical")
	}
}

func TestOpenRejects(t *testing.T) {
	pass := []byte("passphrase")
	sealed, err := Seal([]byte("the cluster CA key and the whole state"), pass)
	if err != nil {
		t.Fatal(err)
	}
	hdr := headerFixed + saltSize + nonceSize
	flip := func(i int) []byte {
		b := bytes.Clone(sealed)
		b[i] ^= 0x01
		return b
	}
	for _, tc := range []struct {
		name    string
		sealed  []byte
		pass    []byte
		wantErr error // nil: any error
	}{
		{"wrong passphrase", sealed, []byte("passphrasE"), ErrWrongPassphrase},
		{"empty passphrase", sealed, nil, ErrEmptyPassphrase},
		{"not sealed", []byte("-----BEGIN CERTIFICATE-----"), pass, ErrNotSealed},
		{"magic", flip(0), pass, ErrNotSealed},
		{"version", flip(len(sealMagic)), pass, nil},
		{"kdf", flip(len(sealMagic) + 1), pass, nil},
		{"iterations too high", flip(len(sealMagic) + 2), pass, nil},
		{"iterations changed", flip(len(sealMagic) + 5), pass, ErrWrongPassphrase},
		{"salt", flip(headerFixed), pass, ErrWrongPassphrase},
		{"nonce", flip(headerFixed + saltSize), pass, ErrWrongPassphrase},
		{"ciphertext", flip(hdr), pass, ErrWrongPassphrase},
		{"tag", flip(len(sealed) - 1), pass, ErrWrongPassphrase},
		{"truncated", sealed[:hdr+10], pass, ErrNotSealed},
		{"extended", append(bytes.Clone(sealed), 0), pass, ErrWrongPassphrase},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Open(tc.sealed, tc.pass)
			if err == nil {
				t.Fatal("Open succeeded")
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Fatalf("Open error %q, want %q", err, tc.wantErr)
			}
		})
	}
}

func TestSealEmptyPassphrase(t *testing.T) {
	if _, err := Seal([]byte("x"), nil); !errors.Is(err, ErrEmptyPassphrase) {
		t.Fatalf("Seal with empty passphrase: %v, want ErrEmptyPassphrase", err)
	}
}
