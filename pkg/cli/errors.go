package cli

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Exit codes, as the AWS CLI uses them.
const (
	exitTaskFailed  = 1   // the request worked but its tasks did not (no task started, a task stopped)
	exitInterrupted = 130 // SIGINT
	exitUsage       = 252 // bad command line: unknown command or flag, missing or invalid value
	exitConfig      = 253 // missing or invalid configuration: no CA certificate, bad config file
	exitServer      = 254 // the server returned an error
	exitFailure     = 255 // anything else: cannot connect, cannot read a file, ...
)

// exitError ends a command with an exit code and a message for stderr (none if msg is empty).
type exitError struct {
	code int
	msg  string
	err  error
}

func (e *exitError) Error() string {
	if e.msg != "" {
		return e.msg
	}
	return fmt.Sprintf("exit status %d", e.code)
}

func (e *exitError) Unwrap() error { return e.err }

// usageError is a command line mistake (exit 252).
func usageError(msg string) *exitError { return &exitError{code: exitUsage, msg: msg} }

// usageErrorf formats a usage error about one flag the way the AWS CLI does.
func usageErrorf(flag, format string, args ...any) *exitError {
	return usageError(fmt.Sprintf("orchctl: error: argument %s: %s", flag, fmt.Sprintf(format, args...)))
}

// configError is missing or invalid configuration (exit 253).
func configError(err error) *exitError {
	var ee *exitError
	if errors.As(err, &ee) {
		return ee
	}
	return &exitError{code: exitConfig, msg: err.Error(), err: err}
}

// taskFailed reports tasks that did not start or did not reach the awaited status (exit 1).
func taskFailed(msg string) *exitError { return &exitError{code: exitTaskFailed, msg: msg} }

// apiError turns the error of the API call op into the AWS CLI's message:
// "An error occurred (NotFound) when calling the RunTask operation: cluster default not found".
func apiError(ctx context.Context, op string, err error) error {
	if ctx.Err() != nil || errors.Is(err, context.Canceled) {
		return &exitError{code: exitInterrupted, err: err}
	}
	st, ok := status.FromError(err)
	if !ok {
		st = status.New(codes.Unknown, err.Error())
	}
	return &exitError{
		code: exitServer,
		err:  err,
		msg:  fmt.Sprintf("An error occurred (%s) when calling the %s operation: %s", st.Code(), op, st.Message()),
	}
}
