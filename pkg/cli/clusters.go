package cli

import (
	"context"
	"encoding/json"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"orch/pkg/arn"
	orchv1 "orch/proto/orch/v1"
)

func (a *app) createClusterCmd() *cobra.Command {
	var name, cidr string
	var tags []string
	cmd := &cobra.Command{
		Use:   "create-cluster --cluster-name NAME [--cidr CIDR] [--tags key=K,value=V ...]",
		Short: "Create a cluster",
		Long: `Create a cluster and its network. Without --cidr the scheduler picks a free /16
from 10.64.0.0/10; each container instance gets a /24 of it.`,
		Example: `  orchctl create-cluster --cluster-name prod --cidr 10.70.0.0/16 --tags key=team,value=web key=env,value=prod`,
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			parsed, err := parseTags(append(tags, args...))
			if err != nil {
				return err
			}
			c, err := a.dial(cmd)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			resp, err := c.CreateCluster(ctx, &orchv1.CreateClusterRequest{ClusterName: name, Cidr: cidr, Tags: parsed})
			if err != nil {
				return apiError(ctx, "CreateCluster", err)
			}
			if a.json() {
				return writeJSON(cmd.OutOrStdout(), resp)
			}
			return writeClusters(cmd.OutOrStdout(), []*orchv1.Cluster{resp.Cluster}, nil)
		}),
	}
	cmd.Flags().StringVar(&name, "cluster-name", "", "name of the cluster (required)")
	cmd.Flags().StringVar(&cidr, "cidr", "", "cluster network, e.g. 10.70.0.0/16 (default: a free /16 of 10.64.0.0/10)")
	cmd.Flags().StringArrayVar(&tags, "tags", nil, "tags as key=K,value=V (several may follow one --tags) or a JSON list")
	cmd.MarkFlagRequired("cluster-name")
	return cmd
}

func (a *app) describeClustersCmd() *cobra.Command {
	var clusters []string
	cmd := &cobra.Command{
		Use:   "describe-clusters [--clusters NAME ...]",
		Short: "Describe clusters (default: the default cluster)",
		Example: `  orchctl describe-clusters --clusters default prod
  orchctl describe-clusters -o json`,
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			c, err := a.dial(cmd)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			resp, err := c.DescribeClusters(ctx, &orchv1.DescribeClustersRequest{Clusters: append(clusters, args...)})
			if err != nil {
				return apiError(ctx, "DescribeClusters", err)
			}
			if a.json() {
				return writeJSON(cmd.OutOrStdout(), resp)
			}
			return writeClusters(cmd.OutOrStdout(), resp.Clusters, resp.Failures)
		}),
	}
	cmd.Flags().StringSliceVar(&clusters, "clusters", nil, "cluster names or ARNs (several may follow one --clusters)")
	cmd.ValidArgsFunction = a.completeClusters
	return cmd
}

func (a *app) listClustersCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "list-clusters",
		Short:   "List cluster ARNs",
		Example: `  orchctl list-clusters`,
		Args:    cobra.NoArgs,
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			c, err := a.dial(cmd)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			resp, err := c.ListClusters(ctx, &orchv1.ListClustersRequest{})
			if err != nil {
				return apiError(ctx, "ListClusters", err)
			}
			if a.json() {
				return writeJSON(cmd.OutOrStdout(), resp)
			}
			return writeLines(cmd.OutOrStdout(), resp.ClusterArns)
		}),
	}
}

func (a *app) deleteClusterCmd() *cobra.Command {
	var cluster string
	cmd := &cobra.Command{
		Use:     "delete-cluster --cluster NAME",
		Short:   "Delete a cluster that has no container instances, tasks or services left",
		Example: `  orchctl delete-cluster --cluster prod`,
		Args:    cobra.NoArgs,
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			c, err := a.dial(cmd)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			resp, err := c.DeleteCluster(ctx, &orchv1.DeleteClusterRequest{Cluster: cluster})
			if err != nil {
				return apiError(ctx, "DeleteCluster", err)
			}
			if a.json() {
				return writeJSON(cmd.OutOrStdout(), resp)
			}
			return writeClusters(cmd.OutOrStdout(), []*orchv1.Cluster{resp.Cluster}, nil)
		}),
	}
	// No default here: deleting "default" because a flag was forgotten would be a bad surprise.
	cmd.Flags().StringVar(&cluster, "cluster", "", "cluster name or ARN (required)")
	cmd.MarkFlagRequired("cluster")
	cmd.RegisterFlagCompletionFunc("cluster", a.completeClusters)
	return cmd
}

func writeClusters(w io.Writer, clusters []*orchv1.Cluster, failures []*orchv1.Failure) error {
	t := newTable(w, "NAME", "STATUS", "CIDR", "INSTANCES", "RUNNING", "PENDING", "SERVICES", "CREATED")
	for _, c := range clusters {
		if c == nil {
			continue
		}
		name := c.ClusterName
		if name == "" {
			name = arn.ClusterName(c.ClusterArn)
		}
		t.row(name, c.Status, c.Cidr,
			strconv.Itoa(int(c.RegisteredContainerInstancesCount)),
			strconv.Itoa(int(c.RunningTasksCount)),
			strconv.Itoa(int(c.PendingTasksCount)),
			strconv.Itoa(int(c.ActiveServicesCount)),
			formatTime(c.CreatedAt))
	}
	if err := t.flush(); err != nil {
		return err
	}
	return writeFailures(w, failures)
}

// parseTags reads the AWS CLI's shorthand "key=K,value=V" (one tag per value) or a JSON list
// [{"key": "K", "value": "V"}].
func parseTags(values []string) ([]*orchv1.Tag, error) {
	var tags []*orchv1.Tag
	for _, v := range values {
		if strings.HasPrefix(strings.TrimSpace(v), "[") {
			var list []struct{ Key, Value string }
			if err := json.Unmarshal([]byte(v), &list); err != nil {
				return nil, usageErrorf("--tags", "invalid JSON: %v", err)
			}
			for _, t := range list {
				tags = append(tags, &orchv1.Tag{Key: t.Key, Value: t.Value})
			}
			continue
		}
		tag := &orchv1.Tag{}
		for _, kv := range strings.Split(v, ",") {
			k, val, ok := strings.Cut(kv, "=")
			switch {
			case ok && k == "key":
				tag.Key = val
			case ok && k == "value":
				tag.Value = val
			default:
				return nil, usageErrorf("--tags", "expected key=K,value=V, got %q", v)
			}
		}
		if tag.Key == "" {
			return nil, usageErrorf("--tags", "missing key in %q", v)
		}
		tags = append(tags, tag)
	}
	return tags, nil
}

// completeClusters completes cluster names from the scheduler; it stays silent when the
// scheduler cannot be reached quickly.
func (a *app) completeClusters(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	cmd.SetContext(ctx)
	c, err := a.dial(cmd)
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	defer a.close()
	resp, err := c.ListClusters(ctx, &orchv1.ListClustersRequest{})
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	var names []string
	for _, ca := range resp.ClusterArns {
		if n := arn.ClusterName(ca); strings.HasPrefix(n, toComplete) {
			names = append(names, n)
		}
	}
	return names, cobra.ShellCompDirectiveNoFileComp
}

// requireOneOf checks that an enumerated flag has one of the allowed values (case-insensitive)
// and returns it upper-cased; empty stays empty.
func requireOneOf(flag, value string, allowed ...string) (string, error) {
	if value == "" {
		return "", nil
	}
	up := strings.ToUpper(value)
	for _, v := range allowed {
		if up == v {
			return up, nil
		}
	}
	return "", usageErrorf(flag, "invalid choice: %q (choose from %s)", value, strings.Join(allowed, ", "))
}
