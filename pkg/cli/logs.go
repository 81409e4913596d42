package cli

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	orchv1 "orch/proto/orch/v1"
)

func (a *app) logsCmd() *cobra.Command {
	var cluster, container string
	var follow bool
	var tail int32
	cmd := &cobra.Command{
		Use:   "logs TASK [--cluster C] [--container NAME] [--follow] [--tail N]",
		Short: "Print the logs of a task's containers",
		Long: `Print what a task's containers wrote to stdout and stderr. When the task has several
containers and --container is not given, each line is prefixed with "[container] ".
With --follow, new lines are printed as they come until Ctrl-C. With -o json, each entry is
printed as one JSON object per line.`,
		Example: `  orchctl logs 0f3c1e5a9b7d4c2e8f6a1b3c5d7e9f01 --container web -f --tail 100`,
		Args:    cobra.ExactArgs(1),
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			task := args[0]
			c, err := a.dial(cmd)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			prefix := false
			if container == "" {
				// Prefix lines only when they can come from several containers.
				desc, err := c.DescribeTasks(ctx, &orchv1.DescribeTasksRequest{Cluster: cluster, Tasks: []string{task}})
				if err != nil {
					return apiError(ctx, "DescribeTasks", err)
				}
				for _, t := range desc.Tasks {
					prefix = prefix || len(t.Containers) > 1
				}
			}
			stream, err := c.GetLogs(ctx, &orchv1.GetLogsRequest{
				Cluster: cluster, Task: task, Container: container, Follow: follow, Tail: tail,
			})
			if err != nil {
				return apiError(ctx, "GetLogs", err)
			}
			out := cmd.OutOrStdout()
			for {
				e, err := stream.Recv()
				if errors.Is(err, io.EOF) {
					return nil
				}
				if err != nil {
					if ctx.Err() != nil && follow {
						return nil // Ctrl-C is how --follow ends
					}
					return apiError(ctx, "GetLogs", err)
				}
				if a.json() {
					if err := writeJSONLine(out, e); err != nil {
						return err
					}
					continue
				}
				line := e.Message
				if prefix {
					line = "[" + e.Container + "] " + line
				}
				if !strings.HasSuffix(line, "\n") {
					line += "\n"
				}
				if _, err := io.WriteString(out, line); err != nil {
					return fmt.Errorf("write log line: %w", err)
				}
			}
		}),
	}
	a.addClusterFlag(cmd, &cluster)
	f := cmd.Flags()
	f.StringVar(&container, "container", "", "only this container's logs")
	f.BoolVarP(&follow, "follow", "f", false, "keep printing new lines until interrupted")
	f.Int32Var(&tail, "tail", 0, "start with the last N lines of each container (0: all)")
	return cmd
}
