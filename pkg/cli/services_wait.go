package cli

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"orch/pkg/arn"
	"orch/pkg/client"
	orchv1 "orch/proto/orch/v1"
)

// defaultWaitTimeout bounds the service waiters. ECS's ServicesStable polls every 15 s, 40
// times; orch's scheduler is near, so it polls every waitInterval for as long.
const defaultWaitTimeout = 10 * time.Minute

// waitInterval is how often the service waiters poll DescribeServices by default (a variable
// so that tests can shorten it).
var waitInterval = 2 * time.Second

// serviceWaiter is one of ECS's service waiters.
type serviceWaiter struct {
	name string // as the AWS CLI names it in messages: ServicesStable
	// check judges one DescribeServices response: done when the wait succeeded; failure (not
	// empty) when it never can; else pending says why each service is not there yet.
	check func(*orchv1.DescribeServicesResponse) (done bool, failure string, pending []string)
}

// servicesStable is ECS's ServicesStable waiter: every service ACTIVE with exactly one
// deployment and runningCount == desiredCount. A service that is missing, DRAINING or INACTIVE
// ends the wait with a failure, as in ECS; so does (orch's addition) a PRIMARY deployment
// that FAILED and will not be rolled back, since the service stops changing then.
var servicesStable = serviceWaiter{name: "ServicesStable", check: func(resp *orchv1.DescribeServicesResponse) (bool, string, []string) {
	if f := missingService(resp); f != "" {
		return false, f, nil
	}
	var pending []string
	for _, s := range resp.Services {
		name := serviceName(s)
		if s.Status == "DRAINING" || s.Status == "INACTIVE" {
			return false, fmt.Sprintf("service %s is %s", name, s.Status), nil
		}
		if p := primaryDeployment(s); p != nil && p.RolloutState == "FAILED" && !willRollBack(s) {
			msg := fmt.Sprintf("service %s: deployment %s FAILED", name, p.Id)
			if p.RolloutStateReason != "" {
				msg += ": " + p.RolloutStateReason
			}
			return false, msg, nil
		}
		if len(s.Deployments) != 1 || s.RunningCount != s.DesiredCount {
			pending = append(pending, fmt.Sprintf("service %s: %d deployments, %d of %d tasks running",
				name, len(s.Deployments), s.RunningCount, s.DesiredCount))
		}
	}
	return len(pending) == 0, "", pending
}}

// willRollBack reports whether the circuit breaker of s rolls a failed deployment back: it
// has rollback enabled and there is a COMPLETED deployment to return to.
func willRollBack(s *orchv1.Service) bool {
	cb := s.GetDeploymentConfiguration().GetDeploymentCircuitBreaker()
	if !cb.GetEnable() || !cb.GetRollback() {
		return false
	}
	for _, d := range s.Deployments {
		if d.Status != "PRIMARY" && d.RolloutState == "COMPLETED" {
			return true
		}
	}
	return false
}

// servicesInactive is ECS's ServicesInactive waiter: every service INACTIVE (deleted).
var servicesInactive = serviceWaiter{name: "ServicesInactive", check: func(resp *orchv1.DescribeServicesResponse) (bool, string, []string) {
	if f := missingService(resp); f != "" {
		return false, f, nil
	}
	var pending []string
	for _, s := range resp.Services {
		if s.Status != "INACTIVE" {
			pending = append(pending, fmt.Sprintf("service %s is %s", serviceName(s), s.Status))
		}
	}
	return len(pending) == 0, "", pending
}}

// missingService describes the first MISSING failure of resp, or returns "".
func missingService(resp *orchv1.DescribeServicesResponse) string {
	for _, f := range resp.Failures {
		if f.Reason == "MISSING" {
			return fmt.Sprintf("service %s is MISSING", arn.LastSegment(f.Arn))
		}
	}
	return ""
}

// waiterFailed is the AWS CLI's waiter error, exit 255.
func waiterFailed(w serviceWaiter, reason string) *exitError {
	return &exitError{code: exitFailure, msg: fmt.Sprintf("Waiter %s failed: %s", w.name, reason)}
}

// waitServices polls DescribeServices every o.interval until w is satisfied, fails, or
// o.timeout has passed ("Max attempts exceeded"), printing progress to stderr: each service's
// new events (oldest first) and a line when its counts or deployments change. seen holds the
// ids of the events not to print; nil means those of the first response. It returns the last
// response (nil if none came) with the error that ended the wait.
func (a *app) waitServices(cmd *cobra.Command, c *client.Client, w serviceWaiter, cluster string, names []string, o waitOpts, seen map[string]bool) (*orchv1.DescribeServicesResponse, error) {
	ctx := cmd.Context()
	progress := &serviceProgress{w: cmd.ErrOrStderr(), seen: seen, lines: map[string]string{}}
	deadline := time.Now().Add(o.timeout)
	var last *orchv1.DescribeServicesResponse
	for {
		resp, err := c.DescribeServices(ctx, &orchv1.DescribeServicesRequest{Cluster: cluster, Services: names})
		if err != nil {
			return last, apiError(ctx, "DescribeServices", err)
		}
		last = resp
		progress.update(resp)
		done, failure, pending := w.check(resp)
		switch {
		case failure != "":
			return resp, waiterFailed(w, "Waiter encountered a terminal failure state: "+failure)
		case done:
			return resp, nil
		case time.Now().Add(o.interval).After(deadline):
			msg := "Max attempts exceeded"
			for _, p := range pending {
				msg += "\n  " + p
			}
			return resp, waiterFailed(w, msg)
		}
		timer := time.NewTimer(o.interval)
		select {
		case <-ctx.Done():
			timer.Stop()
			return resp, &exitError{code: exitInterrupted, err: ctx.Err()}
		case <-timer.C:
		}
	}
}

// waitServiceStable waits until the service named id (name or ARN) is stable and returns its
// last description (svc if there is none) with the waiter's error.
func (a *app) waitServiceStable(cmd *cobra.Command, c *client.Client, cluster string, svc *orchv1.Service, id string, o waitOpts, seen map[string]bool) (*orchv1.Service, error) {
	resp, err := a.waitServices(cmd, c, servicesStable, cluster, []string{id}, o, seen)
	for _, s := range resp.GetServices() {
		if serviceName(s) == arn.LastSegment(id) {
			return s, err
		}
	}
	return svc, err
}

// serviceProgress prints what changed in services between two polls.
type serviceProgress struct {
	w     io.Writer
	seen  map[string]bool   // "<service>/<event id>" of events already printed or old
	lines map[string]string // the last state line printed per service
}

func (p *serviceProgress) update(resp *orchv1.DescribeServicesResponse) {
	first := p.seen == nil
	if first {
		p.seen = map[string]bool{}
	}
	for _, s := range resp.Services {
		name := serviceName(s)
		for i := len(s.Events) - 1; i >= 0; i-- { // newest first: print oldest first
			ev := s.Events[i]
			key := name + "/" + ev.Id
			if ev.Id == "" {
				key = name + "/" + formatTime(ev.CreatedAt) + " " + ev.Message
			}
			if p.seen[key] || p.seen[ev.Id] {
				continue
			}
			p.seen[key] = true
			if !first {
				fmt.Fprintln(p.w, ev.Message)
			}
		}
		if line := stateLine(s); line != p.lines[name] {
			p.lines[name] = line
			fmt.Fprintln(p.w, line)
		}
	}
}

// stateLine sums up a service for progress output:
// "web: ACTIVE, 1/2 running, 1 pending; web:4 PRIMARY IN_PROGRESS 1/2; web:3 ACTIVE COMPLETED 1/1".
func stateLine(s *orchv1.Service) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s, %d/%d running, %d pending", serviceName(s), s.Status, s.RunningCount, s.DesiredCount, s.PendingCount)
	for _, d := range s.Deployments {
		fmt.Fprintf(&b, "; %s %s", familyRevision(d.TaskDefinition), d.Status)
		if d.RolloutState != "" {
			b.WriteString(" " + d.RolloutState)
		}
		fmt.Fprintf(&b, " %d/%d", d.RunningCount, d.DesiredCount)
	}
	return b.String()
}

func (a *app) waitCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "wait",
		Short: "Wait until services are stable or inactive (as 'aws ecs wait')",
		Long: `Wait until a condition holds, as 'aws ecs wait' does: poll, print nothing on stdout, exit 0
once the condition holds, or exit 255 with "Waiter <Name> failed: ..." when it cannot hold or
--timeout passes. Progress (the services' new events, changes of their counts and deployments)
goes to stderr.`,
		Example: `  orchctl wait services-stable --cluster default --services web api
  orchctl wait services-inactive --services web --timeout 2m`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return usageError("orchctl: error: the following arguments are required: WAITER (services-stable, services-inactive)")
		},
	}
	cmd.AddCommand(
		a.waitServicesCmd("services-stable", servicesStable, "Wait until services have one deployment and all their tasks running",
			`Wait until every named service is ACTIVE with exactly one deployment and runningCount equal to
desiredCount (ECS's ServicesStable). Fails at once if a service is MISSING, DRAINING or
INACTIVE, or if its PRIMARY deployment FAILED with no circuit breaker rollback to come.`),
		a.waitServicesCmd("services-inactive", servicesInactive, "Wait until services are INACTIVE (deleted)",
			`Wait until every named service is INACTIVE, as after delete-service (ECS's ServicesInactive).
Fails at once if a service is MISSING.`),
	)
	return cmd
}

func (a *app) waitServicesCmd(use string, w serviceWaiter, short, long string) *cobra.Command {
	var cluster string
	var services []string
	o := waitOpts{}
	cmd := &cobra.Command{
		Use:     use + " --services NAME|ARN ... [--cluster C] [--timeout D] [--interval D]",
		Short:   short,
		Long:    long,
		Example: "  orchctl wait " + use + " --cluster default --services web --timeout 5m",
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			names := append(services, args...)
			if len(names) == 0 {
				return usageError("orchctl: error: the following arguments are required: --services")
			}
			if o.interval <= 0 {
				return usageErrorf("--interval", "must be positive, got %s", o.interval)
			}
			c, err := a.dial(cmd)
			if err != nil {
				return err
			}
			_, err = a.waitServices(cmd, c, w, cluster, names, o, nil)
			return err
		}),
	}
	a.addClusterFlag(cmd, &cluster)
	f := cmd.Flags()
	f.StringSliceVar(&services, "services", nil, "service names or ARNs, at most 10 (several may follow one --services)")
	cmd.RegisterFlagCompletionFunc("services", a.completeServices)
	cmd.ValidArgsFunction = a.completeServices
	f.DurationVar(&o.timeout, "timeout", defaultWaitTimeout, "give up after this long (exit 255)")
	f.DurationVar(&o.interval, "interval", waitInterval, "time between two polls (ECS's waiter: 15s)")
	return cmd
}
