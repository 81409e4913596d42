package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"orch/pkg/client"
	"orch/pkg/pki"
)

// EnvConfig names the environment variable that holds the path of orchctl's config file
// (default ~/.orch/config.json).
const EnvConfig = "ORCH_CONFIG"

// Config file keys, as `orchctl configure` writes them.
const (
	keyEndpoint = "endpoint"
	keyToken    = "token"
	keyCACert   = "caCert"
)

// Where a setting came from, as `orchctl configure list` shows it.
const (
	sourceFlag    = "flag"
	sourceEnv     = "env"
	sourceConfig  = "config"
	sourceDefault = "default"
)

// setting is the value of one connection setting and where it came from.
type setting struct {
	Value    string `json:"value,omitempty"`
	Source   string `json:"source,omitempty"`   // flag, env, config, default; empty: not set
	Location string `json:"location,omitempty"` // the flag, variable or file
}

// settings are what orchctl connects with.
type settings struct {
	ConfigFile string  `json:"configFile"`
	Endpoint   setting `json:"endpoint"`
	Token      setting `json:"token"`
	CACert     setting `json:"caCert"`
}

// layer is one source of settings, in precedence order: flags, environment, config file.
type layer struct {
	source, location string
	get              func(key string) string
}

// resolve picks the first layer that sets key to a non-blank value, else def (source
// "default"), else nothing. For endpoints, "blank" includes lists of empty items (" , ").
func resolve(key, def string, layers ...layer) setting {
	for _, l := range layers {
		v := l.get(key)
		if strings.Trim(v, " \t,") != "" {
			return setting{Value: v, Source: l.source, Location: l.location}
		}
	}
	if def != "" {
		return setting{Value: def, Source: sourceDefault}
	}
	return setting{}
}

// configPath is $ORCH_CONFIG, else ~/.orch/config.json.
func configPath() (string, error) {
	if p := os.Getenv(EnvConfig); p != "" {
		return p, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("config file: %w (set $%s)", err, EnvConfig)
	}
	return filepath.Join(home, ".orch", "config.json"), nil
}

// readConfig reads the config file as raw values by key, so that saving keeps keys this
// version does not know. A missing file is empty.
func readConfig(path string) (map[string]json.RawMessage, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]json.RawMessage{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("config file: %w", err)
	}
	m := map[string]json.RawMessage{}
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("config file %s: %w", path, err)
	}
	return m, nil
}

// configString returns the string at key, "" when absent.
func configString(path string, m map[string]json.RawMessage, key string) (string, error) {
	raw, ok := m[key]
	if !ok {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", fmt.Errorf("config file %s: %q: %w", path, key, err)
	}
	return s, nil
}

// writeConfig replaces the config file atomically, readable by its owner only (it may hold
// an API token).
func writeConfig(path string, m map[string]json.RawMessage) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	return pki.WriteFileAtomic(path, append(b, '\n'), 0o600)
}

// settings resolves the endpoint, token and CA certificate: flag > environment > config file
// > default. The config file is read once per invocation.
func (a *app) settings(cmd *cobra.Command) (settings, error) {
	if a.resolved != nil {
		return *a.resolved, nil
	}
	path, err := configPath()
	if err != nil {
		return settings{}, err
	}
	m, err := readConfig(path)
	if err != nil {
		return settings{}, err
	}
	file := map[string]string{}
	for _, k := range []string{keyEndpoint, keyToken, keyCACert} {
		if file[k], err = configString(path, m, k); err != nil {
			return settings{}, err
		}
	}
	flag := func(name, value string) layer {
		return layer{sourceFlag, "--" + name, func(string) string {
			if !cmd.Flags().Changed(name) {
				return ""
			}
			return value
		}}
	}
	env := func(name string) layer {
		return layer{sourceEnv, name, func(string) string { return os.Getenv(name) }}
	}
	cfg := layer{sourceConfig, path, func(k string) string { return file[k] }}
	s := settings{
		ConfigFile: path,
		Endpoint:   resolve(keyEndpoint, client.DefaultEndpoint, flag("endpoint", a.endpoint), env(client.EnvEndpoints), cfg),
		Token:      resolve(keyToken, "", flag("token", a.token), env(client.EnvToken), cfg),
		CACert:     resolve(keyCACert, "", flag("ca-cert", a.caCert), env(client.EnvCACert), cfg),
	}
	a.resolved = &s
	return s, nil
}

// from says where a setting came from, for error messages.
func (s setting) from() string {
	switch s.Source {
	case sourceFlag:
		return s.Location
	case sourceEnv:
		return "$" + s.Location
	case sourceConfig:
		return "config file " + s.Location
	}
	return s.Source
}

// maskToken hides all but the last 4 characters of an API token.
func maskToken(t string) string {
	if len(t) < 12 {
		return strings.Repeat("*", len(t))
	}
	return strings.Repeat("*", 16) + t[len(t)-4:]
}

// checkCAFile verifies that path holds a CA certificate before it is saved.
func checkCAFile(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("--ca-cert: %w", err)
	}
	cert, err := pki.ParseCertificatePEM(b)
	if err != nil {
		return fmt.Errorf("--ca-cert %s: %w", path, err)
	}
	if !cert.IsCA {
		return fmt.Errorf("--ca-cert %s: certificate %q is not a CA certificate (want the cluster CA, <data-dir>/ca.pem of a scheduler)", path, cert.Subject)
	}
	return nil
}

func (a *app) configureCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "configure [--endpoint ENDPOINT] [--token TOKEN] [--ca-cert FILE]",
		Short: "Save the scheduler endpoint, API token and CA certificate for later commands",
		Long: `Save the values of the global flags --endpoint, --token and --ca-cert to orchctl's config
file, $` + EnvConfig + ` or ~/.orch/config.json (readable by its owner only), so that later
commands need none of them. Values already saved and not given are kept; an empty value
(--token "") removes one. The CA certificate is saved as an absolute path and must be the
cluster CA, which every scheduler writes to <data-dir>/ca.pem.

Each setting is taken from its flag, else its environment variable ($` + client.EnvEndpoints + `, $` + client.EnvToken + `,
$` + client.EnvCACert + `), else the config file, else the default (` + client.DefaultEndpoint + ` for the endpoint;
none for the token and the CA). 'orchctl configure list' shows what is in effect.`,
		Example: `  orchctl configure --endpoint 10.0.0.1:7400,10.0.0.2:7400 --ca-cert /var/lib/orch/ca.pem
  orchctl configure --token "$(orchctl operator bootstrap-token -o json | jq -r .secretId)"
  orchctl configure list`,
		Args: cobra.NoArgs,
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			type change struct{ flag, key, value string }
			var changes []change
			for _, c := range []change{{"endpoint", keyEndpoint, a.endpoint}, {"token", keyToken, a.token}, {"ca-cert", keyCACert, a.caCert}} {
				if cmd.Flags().Changed(c.flag) {
					changes = append(changes, c)
				}
			}
			if len(changes) == 0 {
				return usageError("orchctl: error: nothing to save: give --endpoint, --token or --ca-cert ('orchctl configure list' shows the settings)")
			}
			path, err := configPath()
			if err != nil {
				return err
			}
			m, err := readConfig(path)
			if err != nil {
				return err
			}
			var saved, removed []string
			for _, c := range changes {
				v := strings.TrimSpace(c.value)
				if v == "" {
					delete(m, c.key)
					removed = append(removed, c.flag)
					continue
				}
				if c.key == keyCACert {
					if v, err = filepath.Abs(v); err != nil {
						return fmt.Errorf("--ca-cert: %w", err)
					}
					if err := checkCAFile(v); err != nil {
						return err
					}
				}
				b, err := json.Marshal(v)
				if err != nil {
					return err
				}
				m[c.key] = b
				saved = append(saved, c.flag)
			}
			if err := writeConfig(path, m); err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if len(saved) > 0 {
				fmt.Fprintf(out, "Saved %s to %s\n", strings.Join(saved, ", "), path)
			}
			if len(removed) > 0 {
				fmt.Fprintf(out, "Removed %s from %s\n", strings.Join(removed, ", "), path)
			}
			return nil
		}),
	}
	cmd.AddCommand(a.configureListCmd())
	return cmd
}

func (a *app) configureListCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "Show the endpoint, token and CA certificate in effect, and where each comes from",
		Long: `Show the endpoint, API token (masked) and CA certificate that commands would use, and
where each comes from: a flag, an environment variable, the config file or the default.`,
		Example: `  orchctl configure list
  ORCH_ADDR=10.0.0.9:7400 orchctl configure list -o json`,
		Args: cobra.NoArgs,
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			s, err := a.settings(cmd)
			if err != nil {
				return configError(err)
			}
			s.Token.Value = maskToken(s.Token.Value)
			out := cmd.OutOrStdout()
			if a.json() {
				b, err := json.MarshalIndent(s, "", "  ")
				if err != nil {
					return err
				}
				_, err = out.Write(append(b, '\n'))
				return err
			}
			return writeSettings(out, s)
		}),
	}
}

func writeSettings(w io.Writer, s settings) error {
	state := ""
	if _, err := os.Stat(s.ConfigFile); errors.Is(err, fs.ErrNotExist) {
		state = " (not created yet)"
	}
	fmt.Fprintf(w, "Config file: %s%s\n", s.ConfigFile, state)
	t := newTable(w, "NAME", "VALUE", "SOURCE", "LOCATION")
	for _, r := range []struct {
		name string
		s    setting
	}{{"endpoint", s.Endpoint}, {"token", s.Token}, {"ca-cert", s.CACert}} {
		v := r.s.Value
		if v == "" {
			v = "<not set>"
		}
		t.row(r.name, v, r.s.Source, r.s.Location)
	}
	return t.flush()
}
