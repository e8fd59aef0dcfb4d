// Package errdefs owns pyro's error classes. Every error that crosses a
// package boundary wraps one of these with %w so that callers (the SDK, the
// CLI's exit-code mapping, the MCP server) can branch with errors.Is.
package errdefs

import (
	"errors"
	"fmt"
)

var (
	// ErrNotFound: an environment, VM, workspace or path does not exist.
	ErrNotFound = errors.New("not found")
	// ErrInvalidArgument: the caller asked for something malformed.
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrAlreadyExists: the thing being created is already there.
	ErrAlreadyExists = errors.New("already exists")
	// ErrFailedPrecondition: the request is valid but the current state forbids it
	// (a workspace being deleted, a VM not started, a tool missing).
	ErrFailedPrecondition = errors.New("failed precondition")
	// ErrUnavailable: no guest can be booted or reached on this host.
	ErrUnavailable = errors.New("guest unavailable")
	// ErrTimeout: a deadline passed (boot, exec, pull).
	ErrTimeout = errors.New("timed out")
	// ErrConflict: the id prefix matches several objects, or a lock is held.
	ErrConflict = errors.New("conflict")
	// ErrInternal: a bug or an unexpected host failure.
	ErrInternal = errors.New("internal error")
)

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

// HintOf returns the first hint found in err's chain, or "".
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

// ClassOf returns the error class of err, or ErrInternal when it has none.
func ClassOf(err error) error {
	for _, c := range []error{ErrInvalidArgument, ErrNotFound, ErrAlreadyExists, ErrConflict,
		ErrFailedPrecondition, ErrUnavailable, ErrTimeout, ErrInternal} {
		if errors.Is(err, c) {
			return c
		}
	}
	return ErrInternal
}

// Code returns the stable machine-readable name of err's class, used in JSON
// error output ("not_found", "invalid_argument", ...).
func Code(err error) string {
	switch ClassOf(err) {
	case ErrInvalidArgument:
		return "invalid_argument"
	case ErrNotFound:
		return "not_found"
	case ErrAlreadyExists:
		return "already_exists"
	case ErrConflict:
		return "conflict"
	case ErrFailedPrecondition:
		return "failed_precondition"
	case ErrUnavailable:
		return "unavailable"
	case ErrTimeout:
		return "timeout"
	}
	return "internal"
}
