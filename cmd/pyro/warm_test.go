package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
)

func init() {
	// warmtemplate KIND MEMMIB VAR: set $VAR to the id of the usable
	// ("warm") template for KIND machines ("vm" or "workspace") of MEMMIB
	// MiB in the `pyro env inspect --json` on stdout; negated, there is none.
	scriptCmdRegistry["warmtemplate"] = func(ts *testscript.TestScript, neg bool, args []string) {
		if len(args) != 3 {
			ts.Fatalf("usage: warmtemplate KIND MEMMIB VAR")
		}
		var info struct {
			Templates []struct {
				ID     string `json:"id"`
				Kind   string `json:"kind"`
				Status string `json:"status"`
				MemMiB int    `json:"mem_mib"`
			} `json:"templates"`
		}
		ts.Check(json.Unmarshal([]byte(ts.ReadFile("stdout")), &info))
		for _, t := range info.Templates {
			if t.Kind == args[0] && strconv.Itoa(t.MemMiB) == args[1] && t.Status == "warm" {
				if neg {
					ts.Fatalf("template %s is warm", t.ID)
				}
				ts.Setenv(args[2], t.ID)
				return
			}
		}
		if !neg {
			ts.Fatalf("no warm template for %s machines of %s MiB", args[0], args[1])
		}
	}
	// damagetemplate ID [-undetected]: overwrite bytes of template ID's
	// device state, as a disk error would; with -undetected, also record
	// the damaged file's digest, so that only the restore itself fails.
	scriptCmdRegistry["damagetemplate"] = func(ts *testscript.TestScript, neg bool, args []string) {
		if len(args) < 1 || len(args) > 2 {
			ts.Fatalf("usage: damagetemplate ID [-undetected]")
		}
		root := filepath.Join(ts.Getenv("PYRO_CACHE_DIR"), "templates", args[0])
		cur, err := os.ReadFile(filepath.Join(root, "current"))
		ts.Check(err)
		dir := filepath.Join(root, strings.TrimSpace(string(cur)))
		f, err := os.OpenFile(filepath.Join(dir, "state"), os.O_RDWR, 0)
		ts.Check(err)
		_, err = f.WriteAt([]byte("not a migration stream"), 0)
		ts.Check(err)
		ts.Check(f.Close())
		if len(args) == 2 {
			data, err := os.ReadFile(filepath.Join(dir, "state"))
			ts.Check(err)
			sum := sha256.Sum256(data)
			var meta map[string]any
			raw, err := os.ReadFile(filepath.Join(dir, "template.json"))
			ts.Check(err)
			ts.Check(json.Unmarshal(raw, &meta))
			meta["state_sha256"] = hex.EncodeToString(sum[:])
			raw, _ = json.Marshal(meta)
			ts.Check(os.WriteFile(filepath.Join(dir, "template.json"), raw, 0o600))
		}
	}
	// hostclock VAR: set $VAR to the host's clock (unix seconds).
	scriptCmdRegistry["hostclock"] = func(ts *testscript.TestScript, neg bool, args []string) {
		if len(args) != 1 {
			ts.Fatalf("usage: hostclock VAR")
		}
		ts.Setenv(args[0], strconv.FormatFloat(float64(time.Now().UnixNano())/1e9, 'f', 3, 64))
	}
	// clocknear SINCE: the first line of stdout is a unix time (date
	// +%s.%N) between $SINCE and now, give or take a second: the guest's
	// clock is the host's, not its template's.
	scriptCmdRegistry["clocknear"] = func(ts *testscript.TestScript, neg bool, args []string) {
		if len(args) != 1 {
			ts.Fatalf("usage: clocknear SINCE")
		}
		since, err := strconv.ParseFloat(args[0], 64)
		ts.Check(err)
		now := float64(time.Now().UnixNano()) / 1e9
		line, _, _ := strings.Cut(strings.TrimSpace(ts.ReadFile("stdout")), "\n")
		guest, err := strconv.ParseFloat(line, 64)
		ts.Check(err)
		if guest < since-1 || guest > now+1 {
			ts.Fatalf("guest clock %.3f is outside [%.3f, %.3f] ± 1 s", guest, since, now)
		}
	}
}
