package main

import (
	"archive/tar"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"syscall"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
)

func init() {
	// wsid: take workspace_id from the last stdout and export WSID and a
	// unique prefix of it as WSIDPREFIX. It also writes evil.tar, an archive
	// with a ../ member, for the hostile-input checks.
	scriptCmdRegistry["wsid"] = func(ts *testscript.TestScript, neg bool, args []string) {
		m := regexp.MustCompile(`"workspace_id": "([0-9a-f]{16})"`).FindStringSubmatch(ts.ReadFile("stdout"))
		if m == nil {
			ts.Fatalf("no workspace_id in stdout")
		}
		ts.Setenv("WSID", m[1])
		ts.Setenv("WSIDPREFIX", m[1][:8])
		f, err := os.Create(ts.MkAbs("evil.tar"))
		ts.Check(err)
		tw := tar.NewWriter(f)
		for _, name := range []string{"ok.txt", "../escaped.txt"} {
			ts.Check(tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: 3, Typeflag: tar.TypeReg}))
			_, err := tw.Write([]byte("bad"))
			ts.Check(err)
		}
		ts.Check(tw.Close())
		ts.Check(f.Close())
	}
	// mkseedtar: write seed.tar holding a.txt and an empty directory b/.
	scriptCmdRegistry["mkseedtar"] = func(ts *testscript.TestScript, neg bool, args []string) {
		f, err := os.Create(ts.MkAbs("seed.tar"))
		ts.Check(err)
		tw := tar.NewWriter(f)
		ts.Check(tw.WriteHeader(&tar.Header{Name: "a.txt", Mode: 0o644, Size: 2, Typeflag: tar.TypeReg}))
		_, err = tw.Write([]byte("a\n"))
		ts.Check(err)
		ts.Check(tw.WriteHeader(&tar.Header{Name: "b/", Mode: 0o755, Typeflag: tar.TypeDir}))
		ts.Check(tw.Close())
		ts.Check(f.Close())
	}
	// mode0700 PATH: PATH is private to the user.
	scriptCmdRegistry["mode0700"] = func(ts *testscript.TestScript, neg bool, args []string) {
		if len(args) != 1 {
			ts.Fatalf("usage: mode0700 PATH")
		}
		fi, err := os.Stat(args[0])
		ts.Check(err)
		if fi.Mode().Perm() != 0o700 {
			ts.Fatalf("%s has mode %v, want 0700", args[0], fi.Mode().Perm())
		}
	}
	// killvmm ID: SIGKILL the VM process (QEMU) of a workspace, as a crash would.
	scriptCmdRegistry["killvmm"] = func(ts *testscript.TestScript, neg bool, args []string) {
		if len(args) != 1 {
			ts.Fatalf("usage: killvmm WORKSPACE_ID")
		}
		data, err := os.ReadFile(filepath.Join(ts.Getenv("PYRO_STATE_DIR"), "workspaces", args[0], "record.json"))
		ts.Check(err)
		var rec struct {
			VMMPid int `json:"vmm_pid"`
		}
		ts.Check(json.Unmarshal(data, &rec))
		if rec.VMMPid == 0 {
			ts.Fatalf("no vmm_pid in the record")
		}
		ts.Check(syscall.Kill(rec.VMMPid, syscall.SIGKILL))
		for i := 0; i < 100; i++ {
			if _, err := os.Stat("/proc/" + strconv.Itoa(rec.VMMPid)); err != nil {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}
