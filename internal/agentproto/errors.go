package agentproto

import (
	"errors"

	"github.com/pyro-mcp/pyro/internal/errdefs"
)

// classOf maps a WireError code back to the errdefs class it came from.
func classOf(code string) error {
	switch code {
	case "invalid_argument":
		return errdefs.ErrInvalidArgument
	case "not_found":
		return errdefs.ErrNotFound
	case "already_exists":
		return errdefs.ErrAlreadyExists
	case "conflict":
		return errdefs.ErrConflict
	case "failed_precondition":
		return errdefs.ErrFailedPrecondition
	case "unavailable":
		return errdefs.ErrUnavailable
	case "timeout":
		return errdefs.ErrTimeout
	}
	return errdefs.ErrInternal
}

// toWire turns a handler's error into what travels on the wire, keeping its
// class and hint.
func toWire(err error) *WireError {
	return &WireError{Code: errdefs.Code(err), Message: err.Error(), Hint: errdefs.HintOf(err)}
}

// fromWire turns a guest's error into a host error that wraps the matching
// errdefs class (for errors.Is) and the *WireError itself (for errors.As).
func fromWire(method string, we *WireError) error {
	return errdefs.Wrap(classOf(we.Code), we, we.Hint, "agent %s", method)
}

// IsWireError reports whether err came from the guest rather than from the
// connection.
func IsWireError(err error) bool {
	var we *WireError
	return errors.As(err, &we)
}
