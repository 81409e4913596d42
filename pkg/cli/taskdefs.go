package cli

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"orch/pkg/taskdef"
	orchv1 "orch/proto/orch/v1"
)

func (a *app) registerTaskDefinitionCmd() *cobra.Command {
	var input string
	cmd := &cobra.Command{
		Use:   "register-task-definition --cli-input-json file://FILE|JSON|-",
		Short: "Register a new revision of a task definition from its ECS JSON",
		Long: `Register a task definition written as ECS JSON (what 'aws ecs register-task-definition
--cli-input-json' takes). Each registration of a family makes its next revision.
--cli-input-json takes file://PATH, the JSON itself, or - for standard input.`,
		Example: `  orchctl register-task-definition --cli-input-json file://web.json
  cat web.json | orchctl register-task-definition --cli-input-json -`,
		Args: cobra.NoArgs,
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			data, err := readParam(cmd, "--cli-input-json", input)
			if err != nil {
				return err
			}
			td, err := taskdef.Parse(data)
			if err != nil {
				msg := err.Error()
				if strings.Contains(msg, "\n") { // one line per invalid field, indented
					msg = "invalid task definition:\n  " + strings.ReplaceAll(msg, "\n", "\n  ")
				}
				return usageErrorf("--cli-input-json", "%s", msg)
			}
			c, err := a.dial(cmd)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			resp, err := c.RegisterTaskDefinition(ctx, &orchv1.RegisterTaskDefinitionRequest{TaskDefinition: td})
			if err != nil {
				return apiError(ctx, "RegisterTaskDefinition", err)
			}
			if a.json() {
				return writeJSON(cmd.OutOrStdout(), resp)
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), tdName(resp.TaskDefinition))
			return err
		}),
	}
	cmd.Flags().StringVar(&input, "cli-input-json", "", "the task definition: file://PATH, JSON text, or - for stdin (required)")
	cmd.MarkFlagRequired("cli-input-json")
	return cmd
}

func (a *app) describeTaskDefinitionCmd() *cobra.Command {
	var name string
	cmd := &cobra.Command{
		Use:   "describe-task-definition --task-definition FAMILY[:REVISION]",
		Short: "Describe a task definition (a family alone means its latest ACTIVE revision)",
		Example: `  orchctl describe-task-definition --task-definition web:3
  orchctl describe-task-definition --task-definition web -o json`,
		Args: cobra.NoArgs,
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			c, err := a.dial(cmd)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			resp, err := c.DescribeTaskDefinition(ctx, &orchv1.DescribeTaskDefinitionRequest{TaskDefinition: name})
			if err != nil {
				return apiError(ctx, "DescribeTaskDefinition", err)
			}
			if a.json() {
				return writeJSON(cmd.OutOrStdout(), resp)
			}
			return writeTaskDefinition(cmd.OutOrStdout(), resp.TaskDefinition)
		}),
	}
	cmd.Flags().StringVar(&name, "task-definition", "", "family, family:revision or ARN (required)")
	cmd.MarkFlagRequired("task-definition")
	return cmd
}

func (a *app) listTaskDefinitionsCmd() *cobra.Command {
	var prefix, statusFlag, sortFlag string
	cmd := &cobra.Command{
		Use:     "list-task-definitions [--family-prefix P] [--status ACTIVE|INACTIVE|ALL] [--sort ASC|DESC]",
		Short:   "List task definition ARNs",
		Example: `  orchctl list-task-definitions --family-prefix web --sort DESC`,
		Args:    cobra.NoArgs,
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			st, err := requireOneOf("--status", statusFlag, "ACTIVE", "INACTIVE", "ALL")
			if err != nil {
				return err
			}
			so, err := requireOneOf("--sort", sortFlag, "ASC", "DESC")
			if err != nil {
				return err
			}
			c, err := a.dial(cmd)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			resp, err := c.ListTaskDefinitions(ctx, &orchv1.ListTaskDefinitionsRequest{FamilyPrefix: prefix, Status: st, Sort: so})
			if err != nil {
				return apiError(ctx, "ListTaskDefinitions", err)
			}
			if a.json() {
				return writeJSON(cmd.OutOrStdout(), resp)
			}
			return writeLines(cmd.OutOrStdout(), resp.TaskDefinitionArns)
		}),
	}
	cmd.Flags().StringVar(&prefix, "family-prefix", "", "only families starting with this prefix")
	cmd.Flags().StringVar(&statusFlag, "status", "", "ACTIVE (default), INACTIVE or ALL")
	cmd.Flags().StringVar(&sortFlag, "sort", "", "ASC (default) or DESC")
	cmd.RegisterFlagCompletionFunc("status", cobra.FixedCompletions([]string{"ACTIVE", "INACTIVE", "ALL"}, cobra.ShellCompDirectiveNoFileComp))
	cmd.RegisterFlagCompletionFunc("sort", cobra.FixedCompletions([]string{"ASC", "DESC"}, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

func (a *app) deregisterTaskDefinitionCmd() *cobra.Command {
	var name string
	cmd := &cobra.Command{
		Use:     "deregister-task-definition --task-definition FAMILY:REVISION",
		Short:   "Mark a task definition revision INACTIVE (running tasks are not affected)",
		Example: `  orchctl deregister-task-definition --task-definition web:2`,
		Args:    cobra.NoArgs,
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			c, err := a.dial(cmd)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			resp, err := c.DeregisterTaskDefinition(ctx, &orchv1.DeregisterTaskDefinitionRequest{TaskDefinition: name})
			if err != nil {
				return apiError(ctx, "DeregisterTaskDefinition", err)
			}
			if a.json() {
				return writeJSON(cmd.OutOrStdout(), resp)
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "%s %s\n", tdName(resp.TaskDefinition), resp.TaskDefinition.GetStatus())
			return err
		}),
	}
	cmd.Flags().StringVar(&name, "task-definition", "", "family:revision or ARN (required)")
	cmd.MarkFlagRequired("task-definition")
	return cmd
}

// readParam reads a parameter value the way the AWS CLI does: file://PATH or fileb://PATH
// reads a file, - reads standard input, anything else is the value itself.
func readParam(cmd *cobra.Command, flag, value string) ([]byte, error) {
	switch {
	case value == "-":
		b, err := io.ReadAll(cmd.InOrStdin())
		if err != nil {
			return nil, usageErrorf(flag, "read standard input: %v", err)
		}
		return b, nil
	case strings.HasPrefix(value, "file://"), strings.HasPrefix(value, "fileb://"):
		path := value[strings.Index(value, "://")+3:]
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, usageErrorf(flag, "unable to load paramfile %s: %v", value, err)
		}
		return b, nil
	}
	return []byte(value), nil
}

// tdName is "family:revision" of a registered task definition.
func tdName(td *orchv1.TaskDefinition) string {
	if td == nil {
		return ""
	}
	if td.Family != "" {
		return td.Family + ":" + strconv.Itoa(int(td.Revision))
	}
	return familyRevision(td.TaskDefinitionArn)
}

func writeTaskDefinition(w io.Writer, td *orchv1.TaskDefinition) error {
	if td == nil {
		return nil
	}
	kv := newTable(w, "TASK DEFINITION", tdName(td))
	kv.row("ARN", td.TaskDefinitionArn)
	kv.row("STATUS", td.Status)
	kv.row("NETWORK MODE", td.NetworkMode)
	kv.row("CPU", td.Cpu)
	kv.row("MEMORY", td.Memory)
	kv.row("TASK ROLE", td.TaskRoleArn)
	kv.row("REGISTERED AT", formatTime(td.RegisteredAt))
	if err := kv.flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	t := newTable(w, "CONTAINER", "IMAGE", "CPU", "MEMORY", "RESERVATION", "ESSENTIAL", "PORTS")
	for _, c := range td.ContainerDefinitions {
		var ports []string
		for _, p := range c.PortMappings {
			proto := p.Protocol
			if proto == "" {
				proto = "tcp"
			}
			ports = append(ports, fmt.Sprintf("%d/%s", p.ContainerPort, proto))
		}
		cpu := ""
		if c.Cpu != 0 {
			cpu = strconv.Itoa(int(c.Cpu))
		}
		t.row(c.Name, c.Image, cpu, optInt(c.Memory), optInt(c.MemoryReservation),
			strconv.FormatBool(c.Essential == nil || *c.Essential), strings.Join(ports, ","))
	}
	return t.flush()
}

// optInt prints an optional integer; unset prints as "".
func optInt(p *int32) string {
	if p == nil {
		return ""
	}
	return strconv.Itoa(int(*p))
}
