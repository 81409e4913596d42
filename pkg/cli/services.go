package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"orch/pkg/arn"
	"orch/pkg/client"
	orchv1 "orch/proto/orch/v1"
)

// deploymentConfigurationHelp describes --deployment-configuration.
const deploymentConfigurationHelp = `rolling deployment bounds, as shorthand maximumPercent=200,minimumHealthyPercent=100,deploymentCircuitBreaker={enable=true,rollback=true} or as JSON (or file://PATH)`

func (a *app) createServiceCmd() *cobra.Command {
	var (
		cluster, name, td, deployConf, token, input, launchType, strategy string
		desired, grace                                                    int32
		tags                                                              []string
		wo                                                                waitOpts
	)
	cmd := &cobra.Command{
		Use:   "create-service --service-name NAME --task-definition FAMILY[:REVISION] --desired-count N [--cluster C] [--wait]",
		Short: "Create a service: keep --desired-count tasks of a task definition running",
		Long: `Create a service that keeps --desired-count tasks of a task definition running in the
cluster, replacing tasks that stop; its tasks are in the group service:NAME. A later
update-service with a new task definition replaces them in a rolling deployment bounded by
--deployment-configuration: maximumPercent (default 200) caps RUNNING+PENDING tasks at that
percentage of the desired count, minimumHealthyPercent (default 100) keeps at least that
percentage RUNNING; deploymentCircuitBreaker={enable=true,rollback=true} stops a deployment
whose tasks keep failing and returns to the last completed one. Quote shorthand that has braces,
or the shell expands them.

--cli-input-json takes ECS's CreateService JSON (file://PATH, the JSON itself, or - for
standard input); flags given beside it override its values. ECS members orch does not
implement (loadBalancers, networkConfiguration, ...) are ignored with a warning.

With --wait, waits as 'orchctl wait services-stable' does, printing the service's events and
progress to stderr, then prints the service as it ended up.`,
		Example: `  orchctl create-service --cluster default --service-name web --task-definition web:3 --desired-count 2 --wait
  orchctl create-service --service-name web --task-definition web --desired-count 4 \
      --deployment-configuration 'maximumPercent=150,minimumHealthyPercent=50,deploymentCircuitBreaker={enable=true,rollback=true}' \
      --tags key=team,value=web
  orchctl create-service --cli-input-json file://web-service.json`,
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			req := &orchv1.CreateServiceRequest{}
			if input != "" {
				var err error
				if req, err = readCreateServiceInput(cmd, input); err != nil {
					return err
				}
			}
			f := cmd.Flags()
			if f.Changed("cluster") || req.Cluster == "" {
				req.Cluster = cluster
			}
			if f.Changed("service-name") {
				req.ServiceName = name
			}
			if f.Changed("task-definition") {
				req.TaskDefinition = td
			}
			if f.Changed("desired-count") {
				req.DesiredCount = &desired
			}
			if f.Changed("deployment-configuration") {
				req.DeploymentConfiguration = &orchv1.DeploymentConfiguration{}
				if err := readStructParam(cmd, "--deployment-configuration", deployConf, req.DeploymentConfiguration); err != nil {
					return err
				}
			}
			if f.Changed("health-check-grace-period-seconds") {
				req.HealthCheckGracePeriodSeconds = grace
			}
			if f.Changed("launch-type") {
				req.LaunchType = launchType
			}
			if f.Changed("scheduling-strategy") {
				req.SchedulingStrategy = strategy
			}
			if f.Changed("client-token") {
				req.ClientToken = token
			}
			if f.Changed("tags") {
				parsed, err := parseTags(append(tags, args...))
				if err != nil {
					return err
				}
				req.Tags = parsed
			} else if len(args) > 0 {
				return usageError(fmt.Sprintf("orchctl: error: unknown command %q for %q", args[0], cmd.CommandPath()))
			}
			if req.ServiceName == "" {
				return usageError("orchctl: error: the following arguments are required: --service-name")
			}

			c, err := a.dial(cmd)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			resp, err := c.CreateService(ctx, req)
			if err != nil {
				return apiError(ctx, "CreateService", err)
			}
			// Every event of a new service is news.
			return a.waitAndWriteService(cmd, c, resp, &resp.Service, req.Cluster, req.ServiceName, wo, map[string]bool{})
		}),
	}
	a.addClusterFlag(cmd, &cluster)
	f := cmd.Flags()
	f.StringVar(&name, "service-name", "", "name of the service, unique in its cluster (required)")
	f.StringVar(&td, "task-definition", "", "family, family:revision or ARN (a family alone: its latest ACTIVE revision)")
	f.Int32Var(&desired, "desired-count", 0, "number of tasks to keep running")
	f.StringVar(&deployConf, "deployment-configuration", "", deploymentConfigurationHelp)
	f.Int32Var(&grace, "health-check-grace-period-seconds", 0, "seconds after a task starts during which failed health checks are ignored")
	f.StringVar(&launchType, "launch-type", "", "EC2 (default) or EXTERNAL: orch runs tasks on its container instances either way")
	f.StringVar(&strategy, "scheduling-strategy", "", "REPLICA (default; DAEMON is not supported)")
	f.StringArrayVar(&tags, "tags", nil, "tags as key=K,value=V (several may follow one --tags) or a JSON list")
	f.StringVar(&token, "client-token", "", "idempotency token, as ECS's clientToken (1-36 printable ASCII characters)")
	f.StringVar(&input, "cli-input-json", "", "ECS CreateService JSON: file://PATH, JSON text, or - for stdin")
	addWaitFlags(cmd, &wo)
	return cmd
}

func (a *app) updateServiceCmd() *cobra.Command {
	var (
		cluster, service, td, deployConf string
		desired, grace                   int32
		force                            bool
		wo                               waitOpts
	)
	cmd := &cobra.Command{
		Use:   "update-service --service NAME|ARN [--cluster C] [--task-definition FAMILY[:REVISION]] [--desired-count N] [--force-new-deployment] [--wait]",
		Short: "Change a service's desired count, task definition or deployment configuration",
		Long: `Change a service. A new --desired-count starts or stops tasks of the current deployment; a
new --task-definition (or --force-new-deployment, to replace the tasks with fresh ones of the
same definition) starts a rolling deployment within the service's deployment configuration.
Flags left out keep their current values.

With --wait, waits as 'orchctl wait services-stable' does, printing the service's new events
and progress to stderr, then prints the service as it ended up.`,
		Example: `  orchctl update-service --cluster default --service web --task-definition web:4 --wait
  orchctl update-service --service web --desired-count 0
  orchctl update-service --service web --force-new-deployment --deployment-configuration 'maximumPercent=100,minimumHealthyPercent=50'`,
		Args: cobra.NoArgs,
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			req := &orchv1.UpdateServiceRequest{Cluster: cluster, Service: service, TaskDefinition: td, ForceNewDeployment: force}
			f := cmd.Flags()
			if f.Changed("desired-count") {
				req.DesiredCount = &desired
			}
			if f.Changed("health-check-grace-period-seconds") {
				req.HealthCheckGracePeriodSeconds = &grace
			}
			if f.Changed("deployment-configuration") {
				req.DeploymentConfiguration = &orchv1.DeploymentConfiguration{}
				if err := readStructParam(cmd, "--deployment-configuration", deployConf, req.DeploymentConfiguration); err != nil {
					return err
				}
			}
			c, err := a.dial(cmd)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			resp, err := c.UpdateService(ctx, req)
			if err != nil {
				return apiError(ctx, "UpdateService", err)
			}
			// Events from before the update are old news.
			seen := map[string]bool{}
			for _, ev := range resp.Service.GetEvents() {
				seen[ev.Id] = true
			}
			return a.waitAndWriteService(cmd, c, resp, &resp.Service, cluster, service, wo, seen)
		}),
	}
	a.addClusterFlag(cmd, &cluster)
	f := cmd.Flags()
	f.StringVar(&service, "service", "", "service name or ARN (required)")
	f.StringVar(&td, "task-definition", "", "family, family:revision or ARN to deploy (default: keep the current one)")
	f.Int32Var(&desired, "desired-count", 0, "number of tasks to keep running (default: keep the current count)")
	f.StringVar(&deployConf, "deployment-configuration", "", deploymentConfigurationHelp)
	f.Int32Var(&grace, "health-check-grace-period-seconds", 0, "seconds after a task starts during which failed health checks are ignored")
	f.BoolVar(&force, "force-new-deployment", false, "start a new deployment even if the task definition is unchanged")
	addWaitFlags(cmd, &wo)
	cmd.MarkFlagRequired("service")
	cmd.RegisterFlagCompletionFunc("service", a.completeServices)
	return cmd
}

func (a *app) deleteServiceCmd() *cobra.Command {
	var cluster, service string
	var force bool
	cmd := &cobra.Command{
		Use:   "delete-service --service NAME|ARN [--cluster C] [--force]",
		Short: "Delete a service (scale it to 0 first, or use --force)",
		Long: `Delete a service: it becomes DRAINING while its tasks stop, then INACTIVE (still shown by
describe-services for a while, as in ECS). A service whose desired count is not 0 is refused
unless --force is given, which scales it to 0 first.`,
		Example: `  orchctl update-service --service web --desired-count 0 && orchctl delete-service --service web
  orchctl delete-service --cluster prod --service web --force`,
		Args: cobra.NoArgs,
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			c, err := a.dial(cmd)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			resp, err := c.DeleteService(ctx, &orchv1.DeleteServiceRequest{Cluster: cluster, Service: service, Force: force})
			if err != nil {
				return apiError(ctx, "DeleteService", err)
			}
			return a.writeService(cmd.OutOrStdout(), resp, resp.Service)
		}),
	}
	a.addClusterFlag(cmd, &cluster)
	cmd.Flags().StringVar(&service, "service", "", "service name or ARN (required)")
	cmd.Flags().BoolVar(&force, "force", false, "delete even if the desired count is not 0 (scales it to 0)")
	cmd.MarkFlagRequired("service")
	cmd.RegisterFlagCompletionFunc("service", a.completeServices)
	return cmd
}

// describedEvents is how many of each service's newest events describe-services prints in
// table mode (-o json prints all of them).
const describedEvents = 5

func (a *app) describeServicesCmd() *cobra.Command {
	var cluster string
	var services []string
	cmd := &cobra.Command{
		Use:   "describe-services --services NAME|ARN ... [--cluster C]",
		Short: "Describe services: counts, deployments and their rollout, latest events",
		Long: `Describe services: their status and task counts, then their deployments (the PRIMARY one
first: task definition, counts, rollout state), then each service's ` + strconv.Itoa(describedEvents) + ` newest events.
-o json prints ECS's DescribeServices response, with every event.`,
		Example: `  orchctl describe-services --cluster default --services web api
  orchctl describe-services --services web -o json`,
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			names := append(services, args...)
			if len(names) == 0 {
				return usageError("orchctl: error: the following arguments are required: --services")
			}
			c, err := a.dial(cmd)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			resp, err := c.DescribeServices(ctx, &orchv1.DescribeServicesRequest{Cluster: cluster, Services: names})
			if err != nil {
				return apiError(ctx, "DescribeServices", err)
			}
			if a.json() {
				return writeJSON(cmd.OutOrStdout(), resp)
			}
			return writeServices(cmd.OutOrStdout(), resp.Services, resp.Failures, describedEvents)
		}),
	}
	a.addClusterFlag(cmd, &cluster)
	cmd.Flags().StringSliceVar(&services, "services", nil, "service names or ARNs, at most 10 (several may follow one --services)")
	cmd.RegisterFlagCompletionFunc("services", a.completeServices)
	cmd.ValidArgsFunction = a.completeServices
	return cmd
}

func (a *app) listServicesCmd() *cobra.Command {
	var cluster string
	cmd := &cobra.Command{
		Use:     "list-services [--cluster C]",
		Short:   "List the ARNs of a cluster's services",
		Example: `  orchctl list-services --cluster default`,
		Args:    cobra.NoArgs,
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			c, err := a.dial(cmd)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			// Every page, as the AWS CLI fetches them.
			all := &orchv1.ListServicesResponse{}
			req := &orchv1.ListServicesRequest{Cluster: cluster}
			for {
				resp, err := c.ListServices(ctx, req)
				if err != nil {
					return apiError(ctx, "ListServices", err)
				}
				all.ServiceArns = append(all.ServiceArns, resp.ServiceArns...)
				if resp.NextToken == "" || resp.NextToken == req.NextToken {
					break
				}
				req.NextToken = resp.NextToken
			}
			if a.json() {
				return writeJSON(cmd.OutOrStdout(), all)
			}
			return writeLines(cmd.OutOrStdout(), all.ServiceArns)
		}),
	}
	a.addClusterFlag(cmd, &cluster)
	return cmd
}

// createServiceIgnored are the members of ECS's CreateService that orch does not implement,
// each with what orch does instead (or ""). With a value in --cli-input-json they are
// dropped with a warning, so that a JSON written for ECS works unchanged and its author learns
// what was left out; empty ones (as --generate-cli-skeleton writes them) and the values that
// are what orch does anyway are dropped silently.
var createServiceIgnored = map[string]string{
	"availabilityZoneRebalancing": "",
	"capacityProviderStrategy":    "",
	"deploymentController":        "orch deploys with ECS rolling updates",
	"enableECSManagedTags":        "",
	"enableExecuteCommand":        "",
	"loadBalancers":               "",
	"networkConfiguration":        "every task gets its own ENI in the cluster network",
	"platformVersion":             "",
	"propagateTags":               "",
	"role":                        "",
	"serviceConnectConfiguration": "",
	"serviceRegistries":           "",
	"volumeConfigurations":        "",
	"vpcLatticeConfigurations":    "",
}

// deploymentConfigurationIgnored are the members of ECS's DeploymentConfiguration that orch
// does not implement.
var deploymentConfigurationIgnored = map[string]string{
	"alarms":              "",
	"bakeTimeInMinutes":   "",
	"canaryConfiguration": "",
	"lifecycleHooks":      "",
	"linearConfiguration": "",
	"strategy":            "orch deploys with rolling updates",
}

// ignoredDefaults are values of ignored members that ask for what orch does anyway.
var ignoredDefaults = map[string]bool{
	`deploymentController={"type":"ECS"}`:        true,
	`propagateTags="NONE"`:                       true,
	`availabilityZoneRebalancing="DISABLED"`:     true,
	`deploymentConfiguration.strategy="ROLLING"`: true,
}

// readCreateServiceInput reads ECS's CreateService JSON from --cli-input-json.
func readCreateServiceInput(cmd *cobra.Command, value string) (*orchv1.CreateServiceRequest, error) {
	const flag = "--cli-input-json"
	data, err := readParam(cmd, flag, value)
	if err != nil {
		return nil, err
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil {
		return nil, usageErrorf(flag, "invalid JSON: %v", err)
	}
	warn := func(path, note string) {
		msg := fmt.Sprintf("orchctl: warning: %s: ignoring %q: orch does not implement it", flag, path)
		if note != "" {
			msg += " (" + note + ")"
		}
		fmt.Fprintln(cmd.ErrOrStderr(), msg)
	}
	dropIgnored(top, createServiceIgnored, "", warn)
	if raw, ok := top["deploymentConfiguration"]; ok {
		var dc map[string]json.RawMessage
		if json.Unmarshal(raw, &dc) == nil && dc != nil {
			dropIgnored(dc, deploymentConfigurationIgnored, "deploymentConfiguration.", warn)
			if top["deploymentConfiguration"], err = json.Marshal(dc); err != nil {
				return nil, fmt.Errorf("re-encode deploymentConfiguration: %w", err)
			}
		}
	}
	rest, err := json.Marshal(top)
	if err != nil {
		return nil, fmt.Errorf("re-encode the CreateService input: %w", err)
	}
	req := &orchv1.CreateServiceRequest{}
	if err := protojson.Unmarshal(rest, req); err != nil {
		return nil, usageErrorf(flag, "invalid CreateService input: %v", err)
	}
	return req, nil
}

// dropIgnored removes the members of m named in ignored, calling warn for those with a value
// that is neither empty (emptyJSON) nor one of ignoredDefaults.
func dropIgnored(m map[string]json.RawMessage, ignored map[string]string, prefix string, warn func(path, note string)) {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		note, ok := ignored[k]
		if !ok {
			continue
		}
		raw := m[k]
		delete(m, k)
		var compact bytes.Buffer
		if json.Compact(&compact, raw) != nil {
			compact.Reset()
			compact.Write(raw)
		}
		if emptyJSON(raw) || ignoredDefaults[prefix+k+"="+compact.String()] {
			continue
		}
		warn(prefix+k, note)
	}
}

// emptyJSON reports whether a JSON value asks for nothing: null, "", 0, false, [], or an
// object whose members are all empty (such as "alarms": {"alarmNames": [], "enable": false}).
func emptyJSON(raw json.RawMessage) bool {
	var v any
	if json.Unmarshal(raw, &v) != nil {
		return false
	}
	var empty func(any) bool
	empty = func(v any) bool {
		switch v := v.(type) {
		case nil:
			return true
		case string:
			return v == ""
		case float64:
			return v == 0
		case bool:
			return !v
		case []any:
			return len(v) == 0
		case map[string]any:
			for _, m := range v {
				if !empty(m) {
					return false
				}
			}
			return true
		}
		return false
	}
	return empty(v)
}

// writeService prints one service (create, update, delete): resp as JSON, or the service's
// table without events.
// waitAndWriteService prints the service that a create or update returned (resp, whose service
// is *svc): with --wait after waiting as 'orchctl wait services-stable' does (not showing the
// events in seen again), as it ended up then.
func (a *app) waitAndWriteService(cmd *cobra.Command, c *client.Client, resp proto.Message, svc **orchv1.Service,
	cluster, id string, wo waitOpts, seen map[string]bool) error {
	var waitErr error
	if wo.wait {
		*svc, waitErr = a.waitServiceStable(cmd, c, cluster, *svc, id, wo, seen)
	}
	if err := a.writeService(cmd.OutOrStdout(), resp, *svc); err != nil {
		return err
	}
	return waitErr
}

func (a *app) writeService(w io.Writer, resp proto.Message, s *orchv1.Service) error {
	if a.json() {
		return writeJSON(w, resp)
	}
	var list []*orchv1.Service
	if s != nil {
		list = []*orchv1.Service{s}
	}
	return writeServices(w, list, nil, 0)
}

// writeServices prints a table of services, one of their deployments, then up to events
// newest events of each service, then failures.
func writeServices(w io.Writer, services []*orchv1.Service, failures []*orchv1.Failure, events int) error {
	t := newTable(w, "NAME", "STATUS", "DESIRED", "RUNNING", "PENDING", "TASKDEF", "ROLLOUT")
	for _, s := range services {
		rollout := ""
		if p := primaryDeployment(s); p != nil {
			rollout = p.RolloutState
		}
		t.row(serviceName(s), s.Status, strconv.Itoa(int(s.DesiredCount)), strconv.Itoa(int(s.RunningCount)),
			strconv.Itoa(int(s.PendingCount)), familyRevision(s.TaskDefinition), rollout)
	}
	if err := t.flush(); err != nil {
		return err
	}
	if slices.ContainsFunc(services, func(s *orchv1.Service) bool { return len(s.Deployments) > 0 }) {
		fmt.Fprintln(w)
		dt := newTable(w, "SERVICE", "DEPLOYMENT", "STATUS", "TASKDEF", "DESIRED", "RUNNING", "PENDING", "FAILED", "ROLLOUT", "UPDATED", "REASON")
		for _, s := range services {
			for _, d := range s.Deployments {
				dt.row(serviceName(s), d.Id, d.Status, familyRevision(d.TaskDefinition), strconv.Itoa(int(d.DesiredCount)),
					strconv.Itoa(int(d.RunningCount)), strconv.Itoa(int(d.PendingCount)), strconv.Itoa(int(d.FailedTasks)),
					d.RolloutState, formatTime(d.UpdatedAt), d.RolloutStateReason)
			}
		}
		if err := dt.flush(); err != nil {
			return err
		}
	}
	if events > 0 && slices.ContainsFunc(services, func(s *orchv1.Service) bool { return len(s.Events) > 0 }) {
		fmt.Fprintln(w)
		et := newTable(w, "SERVICE", "TIME", "EVENT")
		for _, s := range services {
			for _, ev := range s.Events[:min(events, len(s.Events))] {
				et.row(serviceName(s), formatTime(ev.CreatedAt), ev.Message)
			}
		}
		if err := et.flush(); err != nil {
			return err
		}
	}
	return writeFailures(w, failures)
}

// completeServices completes the names of the services of the command's --cluster; it stays
// silent when the scheduler cannot be reached quickly.
func (a *app) completeServices(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	cmd.SetContext(ctx)
	c, err := a.dial(cmd)
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	defer a.close()
	cluster, _ := cmd.Flags().GetString("cluster")
	resp, err := c.ListServices(ctx, &orchv1.ListServicesRequest{Cluster: cluster, MaxResults: 100})
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	var names []string
	for _, sa := range resp.ServiceArns {
		if n := arn.LastSegment(sa); strings.HasPrefix(n, toComplete) {
			names = append(names, n)
		}
	}
	return names, cobra.ShellCompDirectiveNoFileComp
}

// serviceName is a service's name, else the last segment of its ARN.
func serviceName(s *orchv1.Service) string {
	if s.ServiceName != "" {
		return s.ServiceName
	}
	return arn.LastSegment(s.ServiceArn)
}

// primaryDeployment is the service's PRIMARY deployment, or nil.
func primaryDeployment(s *orchv1.Service) *orchv1.Deployment {
	for _, d := range s.Deployments {
		if d.Status == "PRIMARY" {
			return d
		}
	}
	return nil
}

// waitOpts are the --wait flags of create-service and update-service.
type waitOpts struct {
	wait     bool
	timeout  time.Duration
	interval time.Duration
}

func addWaitFlags(cmd *cobra.Command, o *waitOpts) {
	cmd.Flags().BoolVar(&o.wait, "wait", false, "wait until the service is stable (as 'orchctl wait services-stable')")
	cmd.Flags().DurationVar(&o.timeout, "wait-timeout", defaultWaitTimeout, "with --wait, give up after this long (exit 255)")
	o.interval = waitInterval
}
