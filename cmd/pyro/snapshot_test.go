package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/pyro-mcp/pyro/internal/layers"
)

func init() {
	// layercount N: the layer pool of this script's state holds N layers.
	scriptCmdRegistry["layercount"] = func(ts *testscript.TestScript, neg bool, args []string) {
		if len(args) != 1 {
			ts.Fatalf("usage: layercount N")
		}
		want, err := strconv.Atoi(args[0])
		ts.Check(err)
		p := &layers.Pool{Dir: filepath.Join(ts.Getenv("PYRO_STATE_DIR"), "layers")}
		names, err := p.Names()
		ts.Check(err)
		if len(names) != want {
			ts.Fatalf("%d layers in the pool (%s), want %d", len(names), strings.Join(names, " "), want)
		}
		for _, n := range names {
			fi, err := os.Stat(p.Path(n))
			ts.Check(err)
			if fi.Mode().Perm() != 0o600 {
				ts.Fatalf("layer %s has mode %v, want 0600", n, fi.Mode().Perm())
			}
		}
	}
	// wsnamed NAME VAR: set $VAR to the id of the workspace named NAME.
	scriptCmdRegistry["wsnamed"] = func(ts *testscript.TestScript, neg bool, args []string) {
		if len(args) != 2 {
			ts.Fatalf("usage: wsnamed NAME VAR")
		}
		recs, _ := filepath.Glob(filepath.Join(ts.Getenv("PYRO_STATE_DIR"), "workspaces", "*", "record.json"))
		for _, r := range recs {
			var rec struct {
				ID        string `json:"id"`
				Workspace struct {
					Name string `json:"name"`
				} `json:"workspace"`
			}
			data, err := os.ReadFile(r)
			ts.Check(err)
			ts.Check(json.Unmarshal(data, &rec))
			if rec.Workspace.Name == args[0] {
				ts.Setenv(args[1], rec.ID)
				return
			}
		}
		ts.Fatalf("no workspace named %s", args[0])
	}
	// mk24ws: make a stopped workspace exactly as pyro 2.4 left one (its
	// record and log from testdata/v24, a disk.qcow2 over debian:12's root
	// image holding /workspace/seed.txt and made.txt), from the JSON of
	// `pyro env inspect debian:12 --json` on stdout; export its id as WSID.
	scriptCmdRegistry["mk24ws"] = func(ts *testscript.TestScript, neg bool, args []string) {
		var info struct {
			Paths json.RawMessage `json:"paths"`
		}
		ts.Check(json.Unmarshal([]byte(ts.ReadFile("stdout")), &info))
		var env struct {
			RootfsPath string `json:"rootfs_path"`
		}
		ts.Check(json.Unmarshal(info.Paths, &env))
		id := "0240" + strconv.FormatInt(time.Now().UnixNano()%1e12, 16)
		id = (id + "000000000000")[:16]
		dir := filepath.Join(ts.Getenv("PYRO_STATE_DIR"), "workspaces", id)
		ts.Check(os.MkdirAll(dir, 0o700))
		disk := filepath.Join(dir, "disk.qcow2")
		if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", "-b", env.RootfsPath, "-F", "raw", disk).CombinedOutput(); err != nil {
			ts.Fatalf("qemu-img: %v: %s", err, out)
		}
		// What 2.4's seed and second command left in /workspace, written
		// the way only an offline tool can: through a raw copy and debugfs.
		img := filepath.Join(dir, "tmp.raw")
		cmds := "mkdir /workspace\nwrite " + ts.MkAbs("v24seed.txt") + " /workspace/seed.txt\nwrite " + ts.MkAbs("v24made.txt") + " /workspace/made.txt\n"
		ts.Check(os.WriteFile(ts.MkAbs("v24seed.txt"), []byte("seeded\n"), 0o644))
		ts.Check(os.WriteFile(ts.MkAbs("v24made.txt"), []byte("made-by-2.4\n"), 0o644))
		ts.Check(os.WriteFile(ts.MkAbs("v24cmds"), []byte(cmds), 0o644))
		for _, c := range [][]string{
			{"qemu-img", "convert", "-O", "raw", disk, img},
			{"debugfs", "-w", "-f", ts.MkAbs("v24cmds"), img},
			{"qemu-img", "convert", "-O", "qcow2", "-B", env.RootfsPath, "-F", "raw", img, disk},
		} {
			if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
				ts.Fatalf("%s: %v: %s", c[0], err, out)
			}
		}
		ts.Check(os.Remove(img))
		src, err := os.ReadFile("testdata/v24/record.json")
		ts.Check(err)
		rec := strings.NewReplacer("@ID@", id, "@DISK@", disk, "@ENV@", string(info.Paths),
			"@EXPIRES@", time.Now().Add(time.Hour).UTC().Format(time.RFC3339)).Replace(string(src))
		ts.Check(os.WriteFile(filepath.Join(dir, "record.json"), []byte(rec), 0o600))
		logs, err := os.ReadFile("testdata/v24/logs.jsonl")
		ts.Check(err)
		ts.Check(os.WriteFile(filepath.Join(dir, "logs.jsonl"), logs, 0o600))
		ts.Setenv("WSID", id)
	}
}
