package cli

import (
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"orch/pkg/arn"
	"orch/pkg/lifecycle"
	orchv1 "orch/proto/orch/v1"
)

func (a *app) runTaskCmd() *cobra.Command {
	var (
		cluster, td, startedBy, group, overrides string
		count                                    int32
		wait                                     bool
	)
	cmd := &cobra.Command{
		Use:   "run-task --task-definition FAMILY[:REVISION] [--cluster C] [--count N] [--wait]",
		Short: "Start tasks from a task definition",
		Long: `Start --count tasks from a task definition. Tasks that could not be placed are listed as
failures (reason and detail); the exit code is 1 when no task started. With --wait, progress
goes to stderr until every task is RUNNING (exit 0); if a task stops instead, its stop code,
reason and container exit codes are printed and the exit code is 1.`,
		Example: `  orchctl run-task --cluster default --task-definition web:3 --count 2 --wait
  orchctl run-task --task-definition job --overrides '{"containerOverrides":[{"name":"job","command":["sh","-c","date"]}]}'`,
		Args: cobra.NoArgs,
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			req := &orchv1.RunTaskRequest{Cluster: cluster, TaskDefinition: td, Count: count, StartedBy: startedBy, Group: group}
			if overrides != "" {
				data, err := readParam(cmd, "--overrides", overrides)
				if err != nil {
					return err
				}
				req.Overrides = &orchv1.TaskOverride{}
				if err := protojson.Unmarshal(data, req.Overrides); err != nil {
					return usageErrorf("--overrides", "invalid JSON: %v", err)
				}
			}
			c, err := a.dial(cmd)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			resp, err := c.RunTask(ctx, req)
			if err != nil {
				return apiError(ctx, "RunTask", err)
			}
			var waitErr error
			if wait && len(resp.Tasks) > 0 {
				// Print the tasks as they ended up, even when waiting failed or was interrupted,
				// so that their ids are known.
				resp.Tasks, waitErr = a.waitTasks(cmd, c, cluster, resp.Tasks, lifecycle.Running)
			}
			if err := a.writeTasks(cmd.OutOrStdout(), resp, resp.Tasks, resp.Failures, false); err != nil {
				return err
			}
			if len(resp.Tasks) == 0 {
				return taskFailed("No task was started.")
			}
			return waitErr
		}),
	}
	a.addClusterFlag(cmd, &cluster)
	f := cmd.Flags()
	f.StringVar(&td, "task-definition", "", "family, family:revision or ARN (required)")
	f.Int32Var(&count, "count", 1, "number of tasks to start")
	f.StringVar(&startedBy, "started-by", "", "free-form tag listed by list-tasks --started-by")
	f.StringVar(&group, "group", "", "task group (default family:<family>)")
	f.StringVar(&overrides, "overrides", "", "TaskOverride JSON (or file://PATH): containerOverrides, cpu, memory")
	f.BoolVar(&wait, "wait", false, "wait until the tasks are RUNNING; fail if one stops")
	cmd.MarkFlagRequired("task-definition")
	return cmd
}

func (a *app) stopTaskCmd() *cobra.Command {
	var cluster, task, reason string
	var wait bool
	cmd := &cobra.Command{
		Use:   "stop-task --task ID|ARN [--cluster C] [--reason R] [--wait]",
		Short: "Stop a task",
		Long: `Stop a task: its containers get SIGTERM, then SIGKILL after their stopTimeout. With --wait,
wait until the task is STOPPED and print its final status with the containers' exit codes.`,
		Example: `  orchctl stop-task --task 0f3c1e5a9b7d4c2e8f6a1b3c5d7e9f01 --reason "new release" --wait`,
		Args:    cobra.NoArgs,
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			c, err := a.dial(cmd)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			resp, err := c.StopTask(ctx, &orchv1.StopTaskRequest{Cluster: cluster, Task: task, Reason: reason})
			if err != nil {
				return apiError(ctx, "StopTask", err)
			}
			if wait {
				t := resp.Task
				if t == nil || taskID(t) == "" {
					t = &orchv1.Task{Id: arn.LastSegment(task)}
				}
				final, waitErr := a.waitTasks(cmd, c, cluster, []*orchv1.Task{t}, lifecycle.Stopped)
				resp.Task = final[0]
				if err := a.writeTasks(cmd.OutOrStdout(), resp, final, nil, true); err != nil {
					return err
				}
				return waitErr
			}
			var tasks []*orchv1.Task
			if resp.Task != nil {
				tasks = []*orchv1.Task{resp.Task}
			}
			return a.writeTasks(cmd.OutOrStdout(), resp, tasks, nil, true)
		}),
	}
	a.addClusterFlag(cmd, &cluster)
	cmd.Flags().StringVar(&task, "task", "", "task id (32 hex digits) or ARN (required)")
	cmd.Flags().StringVar(&reason, "reason", "", "why the task is stopped (shown as stoppedReason)")
	cmd.Flags().BoolVar(&wait, "wait", false, "wait until the task is STOPPED")
	cmd.MarkFlagRequired("task")
	return cmd
}

func (a *app) listTasksCmd() *cobra.Command {
	var cluster, family, instance, desired, startedBy, service string
	cmd := &cobra.Command{
		Use:     "list-tasks [--cluster C] [--family F] [--service-name S] [--container-instance X] [--desired-status RUNNING|STOPPED] [--started-by S]",
		Short:   "List task ARNs (default: tasks whose desired status is RUNNING)",
		Example: `  orchctl list-tasks --cluster default --family web --desired-status STOPPED`,
		Args:    cobra.NoArgs,
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			ds, err := requireOneOf("--desired-status", desired, lifecycle.DesiredRunning, lifecycle.DesiredStopped)
			if err != nil {
				return err
			}
			c, err := a.dial(cmd)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			resp, err := c.ListTasks(ctx, &orchv1.ListTasksRequest{
				Cluster: cluster, Family: family, ContainerInstance: instance, DesiredStatus: ds, StartedBy: startedBy,
				ServiceName: service,
			})
			if err != nil {
				return apiError(ctx, "ListTasks", err)
			}
			if a.json() {
				return writeJSON(cmd.OutOrStdout(), resp)
			}
			return writeLines(cmd.OutOrStdout(), resp.TaskArns)
		}),
	}
	a.addClusterFlag(cmd, &cluster)
	f := cmd.Flags()
	f.StringVar(&family, "family", "", "only tasks of this task definition family")
	f.StringVar(&instance, "container-instance", "", "only tasks on this container instance (id or ARN)")
	f.StringVar(&desired, "desired-status", "", "RUNNING (default) or STOPPED")
	f.StringVar(&startedBy, "started-by", "", "only tasks started with this --started-by")
	f.StringVar(&service, "service-name", "", "only tasks of this service (name or ARN)")
	cmd.RegisterFlagCompletionFunc("desired-status", cobra.FixedCompletions([]string{"RUNNING", "STOPPED"}, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

func (a *app) describeTasksCmd() *cobra.Command {
	var cluster string
	var tasks []string
	cmd := &cobra.Command{
		Use:   "describe-tasks --tasks ID|ARN ... [--cluster C]",
		Short: "Describe tasks: status, IP, containers and exit codes, stop reason, times, usage",
		Example: `  orchctl describe-tasks --tasks 0f3c1e5a9b7d4c2e8f6a1b3c5d7e9f01 7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d
  orchctl describe-tasks --cluster prod --tasks 0f3c1e5a9b7d4c2e8f6a1b3c5d7e9f01 -o json`,
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			ids := append(tasks, args...)
			if len(ids) == 0 {
				return usageError("orchctl: error: the following arguments are required: --tasks")
			}
			c, err := a.dial(cmd)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			resp, err := c.DescribeTasks(ctx, &orchv1.DescribeTasksRequest{Cluster: cluster, Tasks: ids})
			if err != nil {
				return apiError(ctx, "DescribeTasks", err)
			}
			return a.writeTasks(cmd.OutOrStdout(), resp, resp.Tasks, resp.Failures, true)
		}),
	}
	a.addClusterFlag(cmd, &cluster)
	cmd.Flags().StringSliceVar(&tasks, "tasks", nil, "task ids or ARNs (several may follow one --tasks)")
	return cmd
}

// writeTasks prints resp as JSON, or as a table of tasks (and of their containers if
// withContainers) followed by failures.
func (a *app) writeTasks(w io.Writer, resp proto.Message, tasks []*orchv1.Task, failures []*orchv1.Failure, withContainers bool) error {
	if a.json() {
		return writeJSON(w, resp)
	}
	t := newTable(w, "TASK", "DEFINITION", "LAST", "DESIRED", "IP", "CPU", "MEMORY",
		"CREATED", "STARTED", "STOPPED", "STOP CODE", "STOPPED REASON")
	for _, task := range tasks {
		cpu, mem := "", ""
		if u := task.Usage; u != nil {
			cpu = strconv.FormatFloat(u.CpuPercent, 'f', 1, 64) + "%"
			mem = formatBytes(u.MemoryBytes)
		}
		t.row(taskID(task), familyRevision(task.TaskDefinitionArn), task.LastStatus, task.DesiredStatus,
			taskIP(task), cpu, mem, formatTime(task.CreatedAt), formatTime(task.StartedAt),
			formatTime(task.StoppedAt), task.StopCode, task.StoppedReason)
	}
	if err := t.flush(); err != nil {
		return err
	}
	if withContainers && len(tasks) > 0 {
		fmt.Fprintln(w)
		ct := newTable(w, "TASK", "CONTAINER", "STATUS", "EXIT CODE", "HEALTH", "REASON")
		for _, task := range tasks {
			for _, c := range task.Containers {
				ct.row(taskID(task), c.Name, c.LastStatus, exitCode(c), c.HealthStatus, c.Reason)
			}
		}
		if err := ct.flush(); err != nil {
			return err
		}
	}
	return writeFailures(w, failures)
}

func exitCode(c *orchv1.Container) string {
	if c.ExitCode == nil {
		return ""
	}
	return strconv.Itoa(int(*c.ExitCode))
}

// stoppedDetail explains why a task stopped: its stop code and reason, then one line per
// container with its exit code and reason.
func stoppedDetail(t *orchv1.Task) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Task %s stopped", taskID(t))
	if t.StopCode != "" {
		fmt.Fprintf(&b, " (%s)", t.StopCode)
	}
	if t.StoppedReason != "" {
		fmt.Fprintf(&b, ": %s", t.StoppedReason)
	}
	for _, c := range t.Containers {
		fmt.Fprintf(&b, "\n  container %s: %s", c.Name, c.LastStatus)
		if c.ExitCode != nil {
			fmt.Fprintf(&b, ", exit code %d", *c.ExitCode)
		}
		if c.Reason != "" {
			fmt.Fprintf(&b, ", %s", c.Reason)
		}
	}
	return b.String()
}
