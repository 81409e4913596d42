package cli

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"unicode/utf8"
)

// EnvSnapshotPassphrase names the environment variable that holds the passphrase snapshots
// are sealed with.
const EnvSnapshotPassphrase = "ORCH_SNAPSHOT_PASSPHRASE"

// MinPassphraseLength is the shortest passphrase ReadPassphrase accepts, in characters.
const MinPassphraseLength = 8

// DefaultPassphraseFileFlag is the flag orchctl names a passphrase file with.
const DefaultPassphraseFileFlag = "--passphrase-file"

// ErrPassphraseRequired is ReadPassphrase's error when no source gives a passphrase.
var ErrPassphraseRequired = errors.New("a passphrase is required")

// Passphrase says where ReadPassphrase looks for a snapshot passphrase.
type Passphrase struct {
	// File, when set, holds the passphrase (trailing newlines are trimmed).
	File string
	// FileFlag is the flag that sets File, for messages (default DefaultPassphraseFileFlag).
	FileFlag string
	// Confirm asks twice on a terminal: for a new passphrase, that seals.
	Confirm bool
	// In is asked on when it is a terminal (default os.Stdin); Prompt gets the prompts
	// (default os.Stderr).
	In     io.Reader
	Prompt io.Writer
}

// ReadPassphrase returns the snapshot passphrase: the content of p.File when set, else
// $ORCH_SNAPSHOT_PASSPHRASE when set, else what the user types (without echo) when p.In is a
// terminal. Without any of them it fails with an error wrapping ErrPassphraseRequired that
// names the flag and the variable; a passphrase shorter than MinPassphraseLength fails too.
// Cancelling ctx stops a prompt (and restores the terminal's echo).
func ReadPassphrase(ctx context.Context, p Passphrase) ([]byte, error) {
	if p.FileFlag == "" {
		p.FileFlag = DefaultPassphraseFileFlag
	}
	if p.In == nil {
		p.In = os.Stdin
	}
	if p.Prompt == nil {
		p.Prompt = os.Stderr
	}
	var pass []byte
	var from string
	switch {
	case p.File != "":
		b, err := os.ReadFile(p.File)
		if err != nil {
			return nil, fmt.Errorf("passphrase file: %w", err)
		}
		pass, from = bytes.TrimRight(b, "\r\n"), "passphrase file "+p.File
	case os.Getenv(EnvSnapshotPassphrase) != "":
		pass, from = []byte(os.Getenv(EnvSnapshotPassphrase)), "$"+EnvSnapshotPassphrase
	default:
		in, restore, ok := openTerminal(p.In)
		if !ok {
			return nil, fmt.Errorf("%w (%s or %s)", ErrPassphraseRequired, p.FileFlag, EnvSnapshotPassphrase)
		}
		defer restore()
		var err error
		if pass, err = promptPassphrase(ctx, bufio.NewReader(in), p.Prompt, p.Confirm); err != nil {
			return nil, err
		}
		from = "the passphrase typed"
	}
	if n := utf8.RuneCount(pass); n < MinPassphraseLength {
		return nil, fmt.Errorf("%s is %d characters long: a passphrase needs at least %d", from, n, MinPassphraseLength)
	}
	return pass, nil
}

// promptPassphrase asks on a terminal whose echo is off, twice when confirm is set.
func promptPassphrase(ctx context.Context, in *bufio.Reader, prompt io.Writer, confirm bool) ([]byte, error) {
	fmt.Fprint(prompt, "Snapshot passphrase: ")
	first, err := readLine(ctx, in, prompt)
	if err != nil {
		return nil, err
	}
	if !confirm {
		return first, nil
	}
	if n := utf8.RuneCount(first); n < MinPassphraseLength {
		return nil, fmt.Errorf("the passphrase typed is %d characters long: a passphrase needs at least %d", n, MinPassphraseLength)
	}
	fmt.Fprint(prompt, "Repeat the passphrase: ")
	second, err := readLine(ctx, in, prompt)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(first, second) {
		return nil, errors.New("the passphrases typed do not match")
	}
	return first, nil
}

// readLine reads one line; the terminal does not echo the newline, so it writes one.
// Reading blocks in a goroutine so that ctx can end the prompt.
func readLine(ctx context.Context, in *bufio.Reader, prompt io.Writer) ([]byte, error) {
	type line struct {
		s   string
		err error
	}
	done := make(chan line, 1)
	go func() {
		s, err := in.ReadString('\n')
		done <- line{s, err}
	}()
	select {
	case <-ctx.Done():
		fmt.Fprintln(prompt)
		return nil, ctx.Err()
	case l := <-done:
		fmt.Fprintln(prompt)
		if l.err != nil && (!errors.Is(l.err, io.EOF) || l.s == "") {
			if errors.Is(l.err, io.EOF) {
				return nil, fmt.Errorf("%w: none typed", ErrPassphraseRequired)
			}
			return nil, fmt.Errorf("read passphrase: %w", l.err)
		}
		return []byte(strings.TrimRight(l.s, "\r\n")), nil
	}
}
