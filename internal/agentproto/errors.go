package agentproto

import (
	"errors"

	"github.com/pyro-mcp/pyro/internal/errdefs"
)

// toWire turns a handler's error into what travels on the wire, keeping its
// class and hint.
func toWire(err error) *WireError {
	return &WireError{Code: errdefs.Code(err), Message: err.Error(), Hint: errdefs.HintOf(err)}
}

// fromWire turns a guest's error into a host error that wraps the matching
// errdefs class (for errors.Is) and the *WireError itself (for errors.As).
// errdefs.FromCode is the one mapping of codes to classes: an unknown code
// (from a newer or hostile guest) is internal.
func fromWire(method string, we *WireError) error {
	return errdefs.Wrap(errdefs.FromCode(we.Code), we, we.Hint, "agent %s", method)
}

// IsWireError reports whether err came from the guest rather than from the
// connection.
func IsWireError(err error) bool {
	var we *WireError
	return errors.As(err, &we)
}
