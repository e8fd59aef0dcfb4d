package firecracker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// The request bodies pyro sends, named after the definitions in
// Firecracker's swagger description (firecracker-api.yaml). Optional
// fields are omitempty so that what is sent is exactly what was meant;
// Firecracker rejects unknown fields.

// MachineConfiguration is PUT /machine-config.
type MachineConfiguration struct {
	VCPUCount  int  `json:"vcpu_count"`
	MemSizeMiB int  `json:"mem_size_mib"`
	SMT        bool `json:"smt,omitempty"`
}

// BootSource is PUT /boot-source.
type BootSource struct {
	KernelImagePath string `json:"kernel_image_path"`
	BootArgs        string `json:"boot_args,omitempty"`
	InitrdPath      string `json:"initrd_path,omitempty"`
}

// Drive is PUT /drives/{drive_id}.
type Drive struct {
	DriveID      string `json:"drive_id"`
	PathOnHost   string `json:"path_on_host"`
	IsRootDevice bool   `json:"is_root_device"`
	IsReadOnly   bool   `json:"is_read_only"`
	CacheType    string `json:"cache_type,omitempty"` // "Unsafe" or "Writeback"
}

// NetworkInterface is PUT /network-interfaces/{iface_id}.
type NetworkInterface struct {
	IfaceID     string `json:"iface_id"`
	HostDevName string `json:"host_dev_name"`
	GuestMAC    string `json:"guest_mac,omitempty"`
}

// Vsock is PUT /vsock.
type Vsock struct {
	GuestCID uint32 `json:"guest_cid"`
	UDSPath  string `json:"uds_path"`
}

// InstanceActionInfo is PUT /actions.
type InstanceActionInfo struct {
	ActionType string `json:"action_type"` // InstanceStart, SendCtrlAltDel, FlushMetrics
}

// Action types.
const (
	ActionInstanceStart  = "InstanceStart"
	ActionSendCtrlAltDel = "SendCtrlAltDel"
)

// FirecrackerVersion is GET /version's answer.
type FirecrackerVersion struct {
	FirecrackerVersion string `json:"firecracker_version"`
}

// Request is one API call of a boot plan.
type Request struct {
	Step   string // a name for logs and errors, e.g. "machine-config"
	Method string
	Path   string
	Body   any
}

// APIError is a non-2xx answer; Fault is Firecracker's fault_message.
type APIError struct {
	Method, Path string
	Status       int
	Fault        string
}

func (e *APIError) Error() string {
	msg := e.Fault
	if msg == "" {
		msg = http.StatusText(e.Status)
	}
	return fmt.Sprintf("firecracker %s %s: %d: %s", e.Method, e.Path, e.Status, msg)
}

// Client speaks Firecracker's API: plain HTTP/1.1 over its unix socket.
type Client struct {
	sock string
	hc   *http.Client
}

// NewClient returns a client for the API socket at sock.
func NewClient(sock string) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
		// One machine, one socket: a single idle connection is plenty.
		MaxIdleConns:      1,
		DisableKeepAlives: false,
	}
	return &Client{sock: sock, hc: &http.Client{Transport: tr, Timeout: 30 * time.Second}}
}

// Close drops idle connections.
func (c *Client) Close() { c.hc.CloseIdleConnections() }

// Do sends one request and decodes a JSON answer into out (may be nil).
func (c *Client) Do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(data)
	}
	// The host part is ignored by the unix dialer; Firecracker wants a
	// well-formed HTTP/1.1 request with a Host header.
	req, err := http.NewRequestWithContext(ctx, method, "http://localhost"+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("firecracker %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode/100 != 2 {
		var fault struct {
			FaultMessage string `json:"fault_message"`
		}
		_ = json.Unmarshal(data, &fault)
		if fault.FaultMessage == "" {
			fault.FaultMessage = strings.TrimSpace(string(data))
		}
		return &APIError{Method: method, Path: path, Status: resp.StatusCode, Fault: fault.FaultMessage}
	}
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("firecracker %s %s: decoding answer: %w", method, path, err)
		}
	}
	return nil
}

// Send performs r.
func (c *Client) Send(ctx context.Context, r Request) error {
	return c.Do(ctx, r.Method, r.Path, r.Body, nil)
}

// Version asks GET /version.
func (c *Client) Version(ctx context.Context) (string, error) {
	var v FirecrackerVersion
	if err := c.Do(ctx, http.MethodGet, "/version", nil, &v); err != nil {
		return "", err
	}
	return v.FirecrackerVersion, nil
}

// WaitReady polls GET /version until the API answers, done closes or ctx
// ends: the socket file appears before Firecracker accepts on it.
func (c *Client) WaitReady(ctx context.Context, done <-chan struct{}) error {
	for {
		qctx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := c.Version(qctx)
		cancel()
		if err == nil {
			return nil
		}
		var ae *APIError
		if errors.As(err, &ae) {
			return nil // it answered: the API is up
		}
		select {
		case <-done:
			return errors.New("firecracker exited")
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}
