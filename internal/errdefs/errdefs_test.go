package errdefs

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

func TestClassOfPriority(t *testing.T) {
	precond := New(ErrFailedPrecondition, "install passt", "guest networking needs passt")
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"nil", nil, "internal"},
		{"plain", errors.New("boom"), "internal"},
		{"one class", New(ErrNotFound, "", "no vm"), "not_found"},
		{"specific cause beats generic wrap", Wrap(ErrUnavailable, precond, "run doctor", "booting the guest"), "failed_precondition"},
		{"deep cause through fmt wraps", fmt.Errorf("a: %w", Wrap(ErrInternal, fmt.Errorf("b: %w", precond), "", "c")), "failed_precondition"},
		{"timeout beats unavailable", Wrap(ErrUnavailable, New(ErrTimeout, "", "no answer"), "", "boot"), "timeout"},
		{"context deadline is timeout", fmt.Errorf("boot: %w", context.DeadlineExceeded), "timeout"},
		{"ctrl-c is cancelled", fmt.Errorf("exec: %w", context.Canceled), "cancelled"},
		{"cancelled beats everything", Wrap(ErrUnavailable, fmt.Errorf("x: %w", context.Canceled), "", "boot"), "cancelled"},
		{"invalid argument beats internal", Wrap(ErrInternal, New(ErrInvalidArgument, "", "bad"), "", "x"), "invalid_argument"},
		{"order does not depend on nesting", Wrap(ErrTimeout, New(ErrUnavailable, "", "u"), "", "t"), "timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Code(tt.err); got != tt.want {
				t.Errorf("Code = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestCodeRoundTrip(t *testing.T) {
	for _, code := range Codes() {
		if got := Code(New(FromCode(code), "", "x")); got != code {
			t.Errorf("FromCode(%q) comes back as %q", code, got)
		}
	}
	if FromCode("no_such_code") != ErrInternal {
		t.Error("an unknown code must be internal")
	}
}

func TestHintOfOutermost(t *testing.T) {
	inner := New(ErrFailedPrecondition, "install passt", "no passt")
	if got := HintOf(Wrap(ErrUnavailable, inner, "", "boot")); got != "install passt" {
		t.Errorf("hint through a hintless wrap = %q", got)
	}
	if got := HintOf(Wrap(ErrUnavailable, inner, "outer", "boot")); got != "outer" {
		t.Errorf("outer hint = %q", got)
	}
}
