// Package cli is the runpod-comfy command line. It is the only code that reads environment
// variables, flags and the terminal; everything below it takes explicit options.
//
// One file per command: each file defines an Options struct filled by flags and one run
// function that calls one library entry point; its constructor is listed in commands (root.go).
package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

// Exit codes, documented in the root command's help.
const (
	ExitOK          = 0
	ExitFailure     = 1
	ExitUsage       = 2 // bad usage or an invalid spec
	ExitInterrupted = 130
)

// ExitError carries an exit code chosen by a command.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("exit status %d", e.Code)
	}
	return e.Err.Error()
}

func (e *ExitError) Unwrap() error { return e.Err }

// usageError marks err as bad usage (exit code 2).
func usageError(err error) error { return &ExitError{Code: ExitUsage, Err: err} }

// silentExit returns an error that sets the exit code and prints nothing more (the command
// has already reported).
func silentExit(code int) error { return &ExitError{Code: code} }

// Main runs the command line with os.Args and returns the process exit code.
func Main() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return run(ctx, os.Args[1:])
}

func run(ctx context.Context, args []string) int {
	root := newRootCmd(ctx)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return ExitOK
	}
	code := exitCode(ctx, err)
	var ee *ExitError
	if !(errors.As(err, &ee) && ee.Err == nil) {
		fmt.Fprintf(os.Stderr, "runpod-comfy: %v\n", err)
	}
	return code
}

// exitCode maps an error to the process exit code in one place.
func exitCode(ctx context.Context, err error) int {
	var ee *ExitError
	var ie interface{ InvalidSpec() bool }
	switch {
	case errors.As(err, &ee):
		return ee.Code
	case errors.Is(err, context.Canceled) && ctx.Err() != nil:
		return ExitInterrupted
	case errors.As(err, &ie) && ie.InvalidSpec():
		return ExitUsage
	case isFlagError(err):
		return ExitUsage
	default:
		return ExitFailure
	}
}
