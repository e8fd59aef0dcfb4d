package mcpserver

import (
	"bytes"
	"context"
	"fmt"
	"runtime/debug"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// guard is the server's outermost defence against what a client sends:
// the client is not trusted, and one request must never take the server
// (and every other session of it) down.
//
//   - "arguments": null is read as no arguments. The go-sdk (v1.8.0)
//     decodes null into a nil map and panics applying the schema's
//     defaults to it: any client could crash the server with one call
//     (found by FuzzToolArguments).
//   - A panic while handling a request becomes an internal error for that
//     request, logged with its stack.
func (s *Server) guard(next mcp.MethodHandler) mcp.MethodHandler {
	return func(ctx context.Context, method string, req mcp.Request) (res mcp.Result, err error) {
		defer func() {
			if p := recover(); p != nil {
				s.log.Error("panic handling a request", "method", method, "panic", p, "stack", string(debug.Stack()))
				res, err = nil, &jsonrpc.Error{Code: jsonrpc.CodeInternalError, Message: fmt.Sprintf("internal error handling %s", method)}
			}
		}()
		if r, ok := req.(*mcp.CallToolRequest); ok && r.Params != nil && bytes.Equal(bytes.TrimSpace(r.Params.Arguments), []byte("null")) {
			r.Params.Arguments = nil
		}
		return next(ctx, method, req)
	}
}
