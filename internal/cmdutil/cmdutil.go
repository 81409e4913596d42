// Package cmdutil holds what orch's daemons' mains share: list flags and the logger.
package cmdutil

import (
	"fmt"
	"log/slog"
	"os"
	"strings"
)

// ListFlag is a repeatable flag whose values may also be comma-separated.
type ListFlag []string

func (l *ListFlag) String() string { return strings.Join(*l, ",") }

// Set implements flag.Value.
func (l *ListFlag) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}

// NewLogger returns a text logger to stderr at the named level (debug, info, warn, error).
func NewLogger(level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: %w", level, err)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l})), nil
}
