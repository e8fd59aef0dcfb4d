// Package errdefs owns pyro's error classes. Every error that crosses a
// package or process boundary wraps one of these with %w so that callers
// (the SDK, the CLI's exit-code mapping, the MCP server) can branch with
// errors.Is, and carries a hint saying what to do. Code and FromCode turn a
// class into its stable name and back, so a class survives a trip through
// JSON (the guest agent's wire errors, the supervisor's ready report).
package errdefs

import (
	"context"
	"errors"
	"fmt"
)

var (
	// ErrCancelled: the caller gave up (Ctrl-C, a cancelled MCP request).
	ErrCancelled = errors.New("cancelled")
	// ErrNotFound: an environment, VM, workspace or path does not exist.
	ErrNotFound = errors.New("not found")
	// ErrInvalidArgument: the caller asked for something malformed.
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrAlreadyExists: the thing being created is already there.
	ErrAlreadyExists = errors.New("already exists")
	// ErrFailedPrecondition: the request is valid but the current state forbids it
	// (a workspace being deleted, a VM not started, a tool missing).
	ErrFailedPrecondition = errors.New("failed precondition")
	// ErrUnavailable: no guest can be booted or reached on this host, or
	// the host is too busy to start one now.
	ErrUnavailable = errors.New("guest unavailable")
	// ErrTimeout: a deadline passed (boot, exec, pull).
	ErrTimeout = errors.New("timed out")
	// ErrConflict: the id prefix matches several objects, or a lock is held.
	ErrConflict = errors.New("conflict")
	// ErrInternal: a bug or an unexpected host failure.
	ErrInternal = errors.New("internal error")
)

// classes lists every class with its code, in priority order: when an
// error's chain holds several classes (an "unavailable: booting the
// guest" wrapping a "failed precondition: passt is not installed"),
// ClassOf returns the first of this list found anywhere in the chain,
// however deep. The order puts the caller's own act first (it cancelled,
// or asked for something malformed or absent), then the specific causes,
// then the generic ones that outer layers add when they give up.
var classes = []struct {
	class error
	code  string
}{
	{ErrCancelled, "cancelled"},
	{ErrInvalidArgument, "invalid_argument"},
	{ErrNotFound, "not_found"},
	{ErrAlreadyExists, "already_exists"},
	{ErrConflict, "conflict"},
	{ErrTimeout, "timeout"},
	{ErrFailedPrecondition, "failed_precondition"},
	{ErrUnavailable, "unavailable"},
	{ErrInternal, "internal"},
}

// Error is a classed error with an optional hint telling the user what to do.
type Error struct {
	Class error  // one of the Err* values above
	Msg   string // what went wrong, lowercase, no trailing period
	Hint  string // what to do about it; may be empty
	Err   error  // the cause; may be nil
}

func (e *Error) Error() string {
	s := e.Msg
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap lets errors.Is match both the class and the cause.
func (e *Error) Unwrap() []error {
	errs := []error{e.Class}
	if e.Err != nil {
		errs = append(errs, e.Err)
	}
	return errs
}

// New returns a classed error.
func New(class error, hint string, format string, args ...any) error {
	return &Error{Class: class, Msg: fmt.Sprintf(format, args...), Hint: hint}
}

// Wrap returns a classed error around cause.
func Wrap(class error, cause error, hint string, format string, args ...any) error {
	return &Error{Class: class, Msg: fmt.Sprintf(format, args...), Hint: hint, Err: cause}
}

// HintOf returns the outermost hint in err's chain, or "": the layer
// closest to the caller knows best what the caller can do.
func HintOf(err error) string {
	var e *Error
	for err != nil {
		if errors.As(err, &e) {
			if e.Hint != "" {
				return e.Hint
			}
			err = e.Err
			continue
		}
		return ""
	}
	return ""
}

// ClassOf returns err's class: the first class of the priority order
// (see classes) found anywhere in err's chain. context.Canceled counts as
// ErrCancelled and context.DeadlineExceeded as ErrTimeout; an error with
// no class is ErrInternal; nil is nil.
func ClassOf(err error) error {
	if err == nil {
		return nil
	}
	for _, c := range classes {
		if errors.Is(err, c.class) {
			return c.class
		}
		switch {
		case c.class == ErrCancelled && errors.Is(err, context.Canceled):
			return ErrCancelled
		case c.class == ErrTimeout && errors.Is(err, context.DeadlineExceeded):
			return ErrTimeout
		}
	}
	return ErrInternal
}

// Code returns the stable machine-readable name of err's class, used in JSON
// error output and MCP tool errors ("not_found", "cancelled", ...).
func Code(err error) string {
	c := ClassOf(err)
	for _, k := range classes {
		if k.class == c {
			return k.code
		}
	}
	return "internal"
}

// FromCode is Code's inverse: the class a code names, ErrInternal for an
// unknown one. Errors decoded from JSON get their class back with it.
func FromCode(code string) error {
	for _, k := range classes {
		if k.code == code {
			return k.class
		}
	}
	return ErrInternal
}

// Codes lists every code in priority order (for docs and tests).
func Codes() []string {
	out := make([]string, len(classes))
	for i, k := range classes {
		out[i] = k.code
	}
	return out
}
