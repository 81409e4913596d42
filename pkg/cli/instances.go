package cli

import (
	"io"
	"strconv"

	"github.com/spf13/cobra"

	"orch/pkg/arn"
	orchv1 "orch/proto/orch/v1"
)

func (a *app) listContainerInstancesCmd() *cobra.Command {
	var cluster, statusFlag string
	cmd := &cobra.Command{
		Use:     "list-container-instances [--cluster C] [--status ACTIVE|DRAINING|INACTIVE]",
		Short:   "List container instance ARNs",
		Example: `  orchctl list-container-instances --cluster default --status ACTIVE`,
		Args:    cobra.NoArgs,
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			st, err := requireOneOf("--status", statusFlag, "ACTIVE", "DRAINING", "INACTIVE")
			if err != nil {
				return err
			}
			c, err := a.dial(cmd)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			resp, err := c.ListContainerInstances(ctx, &orchv1.ListContainerInstancesRequest{Cluster: cluster, Status: st})
			if err != nil {
				return apiError(ctx, "ListContainerInstances", err)
			}
			if a.json() {
				return writeJSON(cmd.OutOrStdout(), resp)
			}
			return writeLines(cmd.OutOrStdout(), resp.ContainerInstanceArns)
		}),
	}
	a.addClusterFlag(cmd, &cluster)
	cmd.Flags().StringVar(&statusFlag, "status", "", "only instances with this status: ACTIVE, DRAINING or INACTIVE")
	cmd.RegisterFlagCompletionFunc("status", cobra.FixedCompletions([]string{"ACTIVE", "DRAINING", "INACTIVE"}, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

func (a *app) describeContainerInstancesCmd() *cobra.Command {
	var cluster string
	var ids []string
	cmd := &cobra.Command{
		Use:   "describe-container-instances [--cluster C] [--container-instances ID|ARN ...]",
		Short: "Describe container instances (default: every instance of the cluster)",
		Example: `  orchctl describe-container-instances
  orchctl describe-container-instances --cluster prod --container-instances 5d2f0c3a... -o json`,
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			c, err := a.dial(cmd)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			ids = append(ids, args...)
			if len(ids) == 0 {
				list, err := c.ListContainerInstances(ctx, &orchv1.ListContainerInstancesRequest{Cluster: cluster})
				if err != nil {
					return apiError(ctx, "ListContainerInstances", err)
				}
				ids = list.ContainerInstanceArns
			}
			resp := &orchv1.DescribeContainerInstancesResponse{}
			if len(ids) > 0 {
				resp, err = c.DescribeContainerInstances(ctx, &orchv1.DescribeContainerInstancesRequest{Cluster: cluster, ContainerInstances: ids})
				if err != nil {
					return apiError(ctx, "DescribeContainerInstances", err)
				}
			}
			if a.json() {
				return writeJSON(cmd.OutOrStdout(), resp)
			}
			return writeContainerInstances(cmd.OutOrStdout(), resp)
		}),
	}
	a.addClusterFlag(cmd, &cluster)
	cmd.Flags().StringSliceVar(&ids, "container-instances", nil, "container instance ids or ARNs (several may follow one flag)")
	return cmd
}

func writeContainerInstances(w io.Writer, resp *orchv1.DescribeContainerInstancesResponse) error {
	t := newTable(w, "ID", "HOSTNAME", "STATUS", "AGENT CONNECTED", "RUNNING", "PENDING",
		"CPU (FREE/TOTAL)", "MEMORY (FREE/TOTAL)", "SUBNET")
	for _, ci := range resp.ContainerInstances {
		id := ci.Id
		if id == "" {
			id = arn.LastSegment(ci.ContainerInstanceArn)
		}
		t.row(id, ci.Hostname, ci.Status, strconv.FormatBool(ci.AgentConnected),
			strconv.Itoa(int(ci.RunningTasksCount)), strconv.Itoa(int(ci.PendingTasksCount)),
			remainingOfRegistered(ci, "CPU"), remainingOfRegistered(ci, "MEMORY"), ci.Subnet)
	}
	if err := t.flush(); err != nil {
		return err
	}
	return writeFailures(w, resp.Failures)
}
