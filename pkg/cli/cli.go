// Package cli implements orchctl, the command line client of orch. Its commands, flags and JSON
// mirror `aws ecs` (create-cluster, register-task-definition, run-task, describe-tasks, ...) so
// that an ECS user feels at home; it talks gRPC over TLS to any scheduler through pkg/client,
// verifying it against the cluster CA certificate and authenticating with an API token, both
// taken from flags, the environment or the config file that `orchctl configure` writes. Exit
// codes follow the AWS CLI: 252 for usage errors, 253 for missing or invalid configuration
// (no CA certificate, unreadable config file), 254 for errors returned by the server, 255 for
// any other failure, 130 when interrupted. It never imports scheduler/ or agent/.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"orch/pkg/client"
)

// defaultCluster is the cluster commands act on when --cluster is not given, as in ECS.
const defaultCluster = "default"

// Execute runs orchctl with the process's arguments and standard streams and returns the exit
// code. SIGINT and SIGTERM cancel the running command; a second signal kills the process.
func Execute() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		stop() // restore the default handlers: a second Ctrl-C ends the process
	}()
	return Run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
}

// Run runs orchctl with args (without the program name) and the given streams and returns the
// exit code. Cancelling ctx interrupts the command as Ctrl-C does.
func Run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	root := NewRootCommand()
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return 0
	}
	var ee *exitError
	if !errors.As(err, &ee) {
		// Errors that did not come out of a command's RunE come from cobra itself: unknown
		// commands or flags, missing required flags, wrong arguments.
		ee = usageError(err.Error())
	}
	if ee.msg != "" {
		fmt.Fprintln(stderr, ee.msg)
	}
	if ee.code == exitUsage {
		fmt.Fprintf(stderr, "See '%s --help'.\n", cmd.CommandPath())
	}
	return ee.code
}

// app holds the global flags and the connection shared by the commands of one invocation.
type app struct {
	endpoint   string
	consistent bool
	token      string
	caCert     string
	output     string
	client     *client.Client
	resolved   *settings // flags, environment and config file, once resolved
}

// NewRootCommand returns the orchctl command tree.
func NewRootCommand() *cobra.Command {
	a := &app{}
	root := &cobra.Command{
		Use:   "orchctl",
		Short: "Command line client of the orch container orchestrator",
		Long: `orchctl talks to the orch schedulers the way 'aws ecs' talks to Amazon ECS: same
commands, same flags, same JSON.

Connections use TLS: orchctl verifies the scheduler against the cluster CA certificate, which
every scheduler writes to <data-dir>/ca.pem, and authenticates with an API token (the first
one comes from 'orchctl operator bootstrap-token'). Each of the scheduler endpoint, the token
and the CA certificate is taken from its flag (--endpoint, --token, --ca-cert), else its
environment variable ($` + client.EnvEndpoints + `, $` + client.EnvToken + `, $` + client.EnvCACert + `), else the config file
that 'orchctl configure' writes ($` + EnvConfig + ` or ~/.orch/config.json), else the default
(` + client.DefaultEndpoint + ` for the endpoint). Comma-separated endpoints are tried in order.`,
		Example: `  orchctl configure --endpoint 10.0.0.1:7400 --ca-cert ca.pem --token orch_...
  orchctl create-cluster --cluster-name default
  orchctl register-task-definition --cli-input-json file://web.json
  orchctl run-task --task-definition web --wait
  orchctl describe-tasks --tasks 0f3c1e...
  orchctl create-service --service-name web --task-definition web --desired-count 2 --wait`,
		SilenceErrors: true,
		SilenceUsage:  true,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			switch a.output {
			case "table", "json":
				return nil
			}
			return usageError(fmt.Sprintf("orchctl: error: argument --output: invalid choice: %q (choose from table, json)", a.output))
		},
	}
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return usageError("orchctl: error: " + err.Error())
	})
	pf := root.PersistentFlags()
	pf.StringVar(&a.endpoint, "endpoint", "", "scheduler address host:port; comma-separated to try several (default $"+client.EnvEndpoints+", the config file or "+client.DefaultEndpoint+")")
	pf.StringVarP(&a.output, "output", "o", "table", "output format: table or json")
	pf.StringVar(&a.token, "token", "", "API token (default $"+client.EnvToken+" or the config file)")
	pf.StringVar(&a.caCert, "ca-cert", "", "cluster CA certificate (PEM) to verify the scheduler with, <data-dir>/ca.pem of any scheduler (default $"+client.EnvCACert+" or the config file)")
	pf.BoolVar(&a.consistent, "consistent", false, "read through the leader (linearizable) instead of from the scheduler answering, which may lag by a heartbeat")
	root.RegisterFlagCompletionFunc("output", cobra.FixedCompletions([]string{"table", "json"}, cobra.ShellCompDirectiveNoFileComp))

	root.AddGroup(
		&cobra.Group{ID: "clusters", Title: "Clusters:"},
		&cobra.Group{ID: "taskdefs", Title: "Task definitions:"},
		&cobra.Group{ID: "tasks", Title: "Tasks:"},
		&cobra.Group{ID: "services", Title: "Services:"},
		&cobra.Group{ID: "instances", Title: "Container instances:"},
		&cobra.Group{ID: "tags", Title: "Tagging:"},
		&cobra.Group{ID: "operator", Title: "Control plane:"},
	)
	add := func(group string, cmds ...*cobra.Command) {
		for _, c := range cmds {
			c.GroupID = group
			root.AddCommand(c)
		}
	}
	add("clusters", a.createClusterCmd(), a.describeClustersCmd(), a.listClustersCmd(), a.deleteClusterCmd())
	add("taskdefs", a.registerTaskDefinitionCmd(), a.describeTaskDefinitionCmd(),
		a.listTaskDefinitionsCmd(), a.deregisterTaskDefinitionCmd())
	add("tasks", a.runTaskCmd(), a.stopTaskCmd(), a.listTasksCmd(), a.describeTasksCmd(), a.logsCmd())
	add("services", a.createServiceCmd(), a.updateServiceCmd(), a.deleteServiceCmd(), a.describeServicesCmd(),
		a.listServicesCmd(), a.waitCmd())
	add("instances", a.listContainerInstancesCmd(), a.describeContainerInstancesCmd())
	add("tags", a.tagResourceCmd(), a.untagResourceCmd(), a.listTagsForResourceCmd())
	add("operator", a.operatorCmd())
	root.AddCommand(versionCmd(), a.configureCmd())
	return root
}

// run adapts a command body into a cobra RunE: every error it returns becomes an *exitError, so
// that Run can tell command failures from cobra's usage errors.
func (a *app) run(fn func(cmd *cobra.Command, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		defer a.close()
		err := fn(cmd, args)
		if err == nil {
			return nil
		}
		var ee *exitError
		if errors.As(err, &ee) {
			return ee
		}
		if cmd.Context().Err() != nil {
			return &exitError{code: exitInterrupted}
		}
		return &exitError{code: exitFailure, msg: err.Error(), err: err}
	}
}

// dial connects to a scheduler once per invocation, with the endpoint, token and CA
// certificate of a.settings.
func (a *app) dial(cmd *cobra.Command) (*client.Client, error) {
	if a.client != nil {
		return a.client, nil
	}
	s, err := a.settings(cmd)
	if err != nil {
		return nil, configError(err)
	}
	eps := client.ResolveEndpoints(s.Endpoint.Value)
	var opts []client.Opt
	if a.consistent {
		opts = append(opts, client.WithConsistentReads())
	}
	if s.Token.Value != "" {
		opts = append(opts, client.WithToken(s.Token.Value))
	}
	if s.CACert.Value != "" {
		opts = append(opts, client.WithCAFile(s.CACert.Value))
	}
	c, err := client.Dial(cmd.Context(), eps, opts...)
	var caErr *client.CAError
	switch {
	case err == nil:
	case errors.Is(err, client.ErrCARequired):
		return nil, configError(fmt.Errorf("%w; to save it for later commands: orchctl configure --ca-cert FILE", err))
	case errors.As(err, &caErr):
		return nil, configError(fmt.Errorf("%w (from %s)", err, s.CACert.from()))
	case cmd.Context().Err() != nil:
		return nil, &exitError{code: exitInterrupted}
	default:
		// The causes, one per endpoint tried ("endpoint h:p: dial tcp ...: connection refused").
		cause := err
		if u := errors.Unwrap(err); u != nil {
			cause = u
		}
		return nil, &exitError{code: exitFailure, err: err,
			msg: "Could not connect to a scheduler: " + strings.ReplaceAll(cause.Error(), "\n", "; ")}
	}
	a.client = c
	return c, nil
}

func (a *app) close() {
	if a.client != nil {
		a.client.Close()
		a.client = nil
	}
}

func (a *app) json() bool { return a.output == "json" }

// addClusterFlag adds --cluster with ECS's default and completion of cluster names.
func (a *app) addClusterFlag(cmd *cobra.Command, p *string) {
	cmd.Flags().StringVar(p, "cluster", defaultCluster, "cluster name or ARN")
	cmd.RegisterFlagCompletionFunc("cluster", a.completeClusters)
}
