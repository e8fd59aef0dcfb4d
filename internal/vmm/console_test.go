package vmm

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestConsoleKeepsTheTail(t *testing.T) {
	tests := []struct {
		name     string
		existing int // bytes already in the log (an earlier boot)
		write    int
		max      int64
	}{
		{"under the cap", 0, 1000, 64 << 10},
		{"flood", 0, 5 << 20, 64 << 10},
		{"earlier boot over the cap", 200 << 10, 10 << 10, 64 << 10},
		{"one huge write", 0, 1 << 20, 64 << 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "console.log")
			if tt.existing > 0 {
				os.WriteFile(path, bytes.Repeat([]byte("old\n"), tt.existing/4), 0o600)
			}
			c, err := StartConsole(path, tt.max)
			if err != nil {
				t.Fatal(err)
			}
			var all bytes.Buffer
			w := c.Writer()
			for i := 0; all.Len() < tt.write; i++ {
				line := fmt.Sprintf("line %08d\n", i)
				if tt.name == "one huge write" {
					line = strings.Repeat("h", tt.write-1) + "\n"
				}
				all.WriteString(line)
				if _, err := w.Write([]byte(line)); err != nil {
					t.Fatal(err)
				}
			}
			c.CloseWriter()
			select {
			case <-c.Done():
			case <-time.After(10 * time.Second):
				t.Fatal("copy did not end")
			}
			got, _ := os.ReadFile(path)
			if int64(len(got)) > tt.max+200 {
				t.Fatalf("log is %d bytes, cap %d", len(got), tt.max)
			}
			tail := all.Bytes()[max(0, all.Len()-int(tt.max/4)):]
			if !bytes.HasSuffix(got, tail) {
				t.Fatalf("log does not end with the last output")
			}
			dropped := tt.existing+tt.write > int(tt.max)
			if strings.Contains(string(got), "earlier bytes of console output dropped") != dropped {
				t.Fatalf("dropped note present = %v, want %v", !dropped, dropped)
			}
		})
	}
}

func TestLogFIFO(t *testing.T) {
	dir := t.TempDir()
	fifo, path := filepath.Join(dir, "fc.fifo"), filepath.Join(dir, "fc.log")
	c, err := StartLogFIFO(fifo, path, 64<<10, -1, -1)
	if err != nil {
		t.Fatal(err)
	}
	// The VMM's side: opened non-blocking, as Firecracker does.
	w, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20000; i++ {
		fmt.Fprintf(w, "warn %d\n", i) // EAGAIN when full: dropped, as the VMM would
	}
	fmt.Fprintf(w, "last line\n")
	w.Close()
	time.Sleep(100 * time.Millisecond)
	c.Stop()
	got, _ := os.ReadFile(path)
	if len(got) > 64<<10+200 || !strings.HasSuffix(string(got), "last line\n") {
		t.Fatalf("log %d bytes, ends %q", len(got), got[max(0, len(got)-20):])
	}
}
