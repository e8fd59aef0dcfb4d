package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
)

func init() {
	// hostget URL: GET URL from the host with Go's HTTP client and write
	// the body to stdout; with !, the request must fail to connect.
	scriptCmdRegistry["hostget"] = func(ts *testscript.TestScript, neg bool, args []string) {
		if len(args) != 1 {
			ts.Fatalf("usage: hostget URL")
		}
		c := &http.Client{Timeout: 10 * time.Second}
		resp, err := c.Get(args[0])
		if neg {
			if err == nil {
				resp.Body.Close()
				ts.Fatalf("GET %s answered %s", args[0], resp.Status)
			}
			return
		}
		ts.Check(err)
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		ts.Check(err)
		fmt.Fprintf(ts.Stdout(), "%s\n%s", resp.Status, body)
	}
	// hostlistener: listen on every address of the host and answer with a
	// secret; set $HOST_ADDR to one of the host's own non-loopback IPv4
	// addresses and $HOST_PORT to the port.
	scriptCmdRegistry["hostlistener"] = func(ts *testscript.TestScript, neg bool, args []string) {
		addrs, err := net.InterfaceAddrs()
		ts.Check(err)
		host := ""
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() {
				host = n.IP.String()
				break
			}
		}
		if host == "" {
			ts.Fatalf("the host has no non-loopback IPv4 address")
		}
		l, err := net.Listen("tcp4", "0.0.0.0:0")
		ts.Check(err)
		ts.Defer(func() { l.Close() })
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				fmt.Fprint(c, "HTTP/1.0 200 OK\r\n\r\nHOST-ADDRESS-SECRET\n")
				c.Close()
			}
		}()
		ts.Setenv("HOST_ADDR", host)
		ts.Setenv("HOST_PORT", fmt.Sprint(l.Addr().(*net.TCPAddr).Port))
	}
	// holdport PORT: hold 127.0.0.1:PORT until the script ends, so that a
	// published port cannot be bound there again.
	scriptCmdRegistry["holdport"] = func(ts *testscript.TestScript, neg bool, args []string) {
		if len(args) != 1 {
			ts.Fatalf("usage: holdport PORT")
		}
		l, err := net.Listen("tcp4", net.JoinHostPort("127.0.0.1", args[0]))
		ts.Check(err)
		ts.Defer(func() { l.Close() })
	}
	// pubport VAR: set $VAR to the host port of the first published port
	// of the service on stdout (JSON).
	scriptCmdRegistry["pubport"] = func(ts *testscript.TestScript, neg bool, args []string) {
		if len(args) != 1 {
			ts.Fatalf("usage: pubport VAR")
		}
		var s struct {
			Ports []struct {
				HostPort int `json:"host_port"`
			} `json:"published_ports"`
		}
		if err := json.Unmarshal([]byte(ts.ReadFile("stdout")), &s); err != nil || len(s.Ports) == 0 {
			ts.Fatalf("no published port on stdout (%v)", err)
		}
		ts.Setenv(args[0], fmt.Sprint(s.Ports[0].HostPort))
	}
}
