package cli

import (
	"io"

	"github.com/spf13/cobra"

	orchv1 "orch/proto/orch/v1"
)

// resourceArnHelp says which ARNs the tagging commands take.
const resourceArnHelp = "ARN of a cluster (arn:aws:ecs:REGION:ACCOUNT:cluster/NAME), a task definition (...:task-definition/FAMILY:REVISION) or a task (...:task/CLUSTER/ID) (required)"

func (a *app) tagResourceCmd() *cobra.Command {
	var resource string
	var tags []string
	cmd := &cobra.Command{
		Use:   "tag-resource --resource-arn ARN --tags key=K,value=V ...",
		Short: "Add tags to a cluster, task definition or task, or change their values",
		Long: `Add tags to a resource; a key the resource already has gets the new value. A resource has
at most 50 tags; keys are 1-128 characters, values at most 256, and keys starting with "aws:"
are reserved. Prints nothing on success, as the AWS CLI.`,
		Example: `  orchctl tag-resource --resource-arn arn:aws:ecs:local:000000000000:cluster/prod --tags key=team,value=web key=env,value=prod
  orchctl tag-resource --resource-arn arn:aws:ecs:local:000000000000:task-definition/web:3 --tags '[{"key":"owner","value":"ops, oncall"}]'`,
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
			if _, err := c.TagResource(ctx, &orchv1.TagResourceRequest{ResourceArn: resource, Tags: parsed}); err != nil {
				return apiError(ctx, "TagResource", err)
			}
			return nil
		}),
	}
	cmd.Flags().StringVar(&resource, "resource-arn", "", resourceArnHelp)
	cmd.Flags().StringArrayVar(&tags, "tags", nil, "tags as key=K,value=V (several may follow one --tags) or a JSON list (required)")
	cmd.MarkFlagRequired("resource-arn")
	cmd.MarkFlagRequired("tags")
	return cmd
}

func (a *app) untagResourceCmd() *cobra.Command {
	var resource string
	var keys []string
	cmd := &cobra.Command{
		Use:   "untag-resource --resource-arn ARN --tag-keys KEY ...",
		Short: "Remove tags from a cluster, task definition or task",
		Long: `Remove the tags with the given keys from a resource; keys it does not have are ignored.
Prints nothing on success, as the AWS CLI.`,
		Example: `  orchctl untag-resource --resource-arn arn:aws:ecs:local:000000000000:cluster/prod --tag-keys team env`,
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			c, err := a.dial(cmd)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			if _, err := c.UntagResource(ctx, &orchv1.UntagResourceRequest{ResourceArn: resource, TagKeys: append(keys, args...)}); err != nil {
				return apiError(ctx, "UntagResource", err)
			}
			return nil
		}),
	}
	cmd.Flags().StringVar(&resource, "resource-arn", "", resourceArnHelp)
	cmd.Flags().StringSliceVar(&keys, "tag-keys", nil, "keys of the tags to remove (several may follow one --tag-keys) (required)")
	cmd.MarkFlagRequired("resource-arn")
	cmd.MarkFlagRequired("tag-keys")
	return cmd
}

func (a *app) listTagsForResourceCmd() *cobra.Command {
	var resource string
	var consistent bool
	cmd := &cobra.Command{
		Use:   "list-tags-for-resource --resource-arn ARN [--consistent]",
		Short: "List the tags of a cluster, task definition or task",
		Long: `List the tags of a resource. Any scheduler answers from its own copy of the state, which
may lag the leader's by a moment; with --consistent the leader answers after confirming that it
still leads, so the answer includes every change acknowledged before it.`,
		Example: `  orchctl list-tags-for-resource --resource-arn arn:aws:ecs:local:000000000000:cluster/prod
  orchctl list-tags-for-resource --resource-arn arn:aws:ecs:local:000000000000:cluster/prod --consistent -o json`,
		Args: cobra.NoArgs,
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			c, err := a.dial(cmd)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			resp, err := c.ListTagsForResource(ctx, &orchv1.ListTagsForResourceRequest{ResourceArn: resource, Consistent: consistent})
			if err != nil {
				return apiError(ctx, "ListTagsForResource", err)
			}
			if a.json() {
				if len(resp.Tags) == 0 {
					// protojson leaves out empty lists; the AWS CLI prints this one.
					_, err := io.WriteString(cmd.OutOrStdout(), "{\n  \"tags\": []\n}\n")
					return err
				}
				return writeJSON(cmd.OutOrStdout(), resp)
			}
			return writeTags(cmd.OutOrStdout(), resp.Tags)
		}),
	}
	cmd.Flags().StringVar(&resource, "resource-arn", "", resourceArnHelp)
	cmd.Flags().BoolVar(&consistent, "consistent", false, "read through the leader: include every change acknowledged before the call")
	cmd.MarkFlagRequired("resource-arn")
	return cmd
}

func writeTags(w io.Writer, tags []*orchv1.Tag) error {
	t := newTable(w, "KEY", "VALUE")
	for _, tg := range tags {
		t.row(tg.Key, tg.Value)
	}
	return t.flush()
}
