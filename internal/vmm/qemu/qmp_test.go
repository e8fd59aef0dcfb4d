package qemu

import (
	"bufio"
	"context"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

func TestTopFile(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"/s/layers/a.qcow2", "/s/layers/a.qcow2"},
		{`json:{"backing": {"driver": "qcow2", "file": {"driver": "file", "filename": "/s/layers/old.qcow2"}}, "driver": "qcow2", "file": {"driver": "file", "filename": "/s/layers/new.qcow2"}}`, "/s/layers/new.qcow2"},
		{"json:{bad", "json:{bad"},
	} {
		if got := topFile(tc.in); got != tc.want {
			t.Errorf("topFile(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// waitMigration follows MIGRATION events after one query-migrate: events
// that came with the query's answer count, a failure carries QEMU's
// description, and a closed monitor ends the wait.
func TestWaitMigrationFollowsEvents(t *testing.T) {
	ev := func(st string) string { return `{"event":"MIGRATION","data":{"status":"` + st + `"}}` }
	for _, tc := range []struct {
		name    string
		replies []string // lines QEMU sends, in order, after the query
		wantErr string   // "" for success
	}{
		{"completed at once", []string{`{"return":{"status":"completed"}}`}, ""},
		{"events", []string{`{"return":{"status":"active"}}`, ev("active"), ev("completed")}, ""},
		{"event before the answer", []string{ev("completed"), `{"return":{"status":"active"}}`}, ""},
		{"failed", []string{`{"return":{"status":"active"}}`, ev("failed"), `{"return":{"status":"failed","error-desc":"bad stream"}}`}, "bad stream"},
		{"monitor closed", []string{`{"return":{"status":"active"}}`}, "waiting for the migration's events"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			host, qemu := net.Pipe()
			defer host.Close()
			go func() {
				defer qemu.Close()
				r := bufio.NewReader(qemu)
				r.ReadString('\n') // query-migrate
				for _, l := range tc.replies {
					if strings.Contains(l, `"failed","error-desc"`) {
						r.ReadString('\n') // the second query-migrate
					}
					io.WriteString(qemu, l+"\n")
				}
			}()
			q := &QMP{c: host, r: bufio.NewReader(host)}
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			err := waitMigration(ctx, q, nil)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("waitMigration: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("waitMigration: %v, want %q", err, tc.wantErr)
			}
		})
	}
}
