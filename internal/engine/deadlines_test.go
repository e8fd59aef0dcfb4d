package engine

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pyro-mcp/pyro/api"
	"github.com/pyro-mcp/pyro/internal/agentproto/fakeguest"
	"github.com/pyro-mcp/pyro/internal/errdefs"
	"github.com/pyro-mcp/pyro/internal/progress"
	"github.com/pyro-mcp/pyro/internal/state"
)

// A guest that takes an archive and never answers: the push gives up after
// the host's idle deadline with a timeout, instead of waiting for ever.
func TestPushSilentGuestTimesOut(t *testing.T) {
	e := newEngine(t, BackendHostCompat)
	old := baseGuestIdle
	baseGuestIdle = time.Second
	t.Cleanup(func() { baseGuestIdle = old })

	rec := &vmRecord{ID: state.NewID(), Kind: kindWorkspace}
	if err := os.MkdirAll(e.runDir(rec.ID), 0o700); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("unix", filepath.Join(e.runDir(rec.ID), "ctl.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fakeguest.Serve(t.Context(), c, fakeguest.Silent)
		}
	}()
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "f"), make([]byte, 4<<20), 0o644)
	start := time.Now()
	_, err = e.push(t.Context(), rec, src, api.WorkspaceRoot, 0)
	took := time.Since(start)
	if !errors.Is(err, errdefs.ErrTimeout) {
		t.Fatalf("push to a silent guest: %v", err)
	}
	if limit := stretch(baseGuestIdle) + 5*time.Second; took > limit {
		t.Errorf("gave up after %s, deadline %s", took, stretch(baseGuestIdle))
	}
	t.Logf("gave up after %s: %v", took.Round(time.Millisecond), err)
}

// A workspace whose guest stops answering in the middle of its seed (its
// VM is frozen with SIGSTOP) holds its record lock: a delete kills it
// without the guest's help and returns, and creates (which reap expired
// objects first) do not wait behind it.
func TestDeleteAndCreateDoNotWaitForAStuckGuest(t *testing.T) {
	e := newEngine(t, BackendHostCompat)
	ctx := t.Context()
	seed := t.TempDir()
	for i := range 4000 {
		os.WriteFile(filepath.Join(seed, fmt.Sprintf("f%05d", i)), make([]byte, 4096), 0o644)
	}
	var once sync.Once
	frozen := make(chan string, 1)
	pctx := progress.WithFunc(ctx, func(p api.Progress) {
		if p.Phase != phaseSeed || p.Done < 100 {
			return
		}
		once.Do(func() {
			var rec vmRecord
			if err := e.wss.Read(p.ID, &rec); err != nil || rec.SupervisorPID == 0 {
				t.Errorf("no supervisor to freeze: %v", err)
				frozen <- ""
				return
			}
			syscall.Kill(rec.SupervisorPID, syscall.SIGSTOP) // the "guest" (in-process agent) stops answering
			frozen <- p.ID
		})
	})
	created := make(chan error, 1)
	go func() {
		_, err := e.CreateWorkspace(pctx, api.CreateWorkspaceOptions{Environment: "debian:12", SeedPath: seed,
			Shape: api.Shape{AllowHostCompat: true, TTLSeconds: 1}})
		created <- err
	}()
	var id string
	select {
	case id = <-frozen:
	case err := <-created:
		t.Fatalf("the seed ended before the guest could be frozen: %v", err)
	case <-time.After(time.Minute):
		t.Fatal("no seed progress")
	}
	if id == "" {
		t.FailNow()
	}
	time.Sleep(1500 * time.Millisecond) // past its TTL

	// A create reaps expired objects first: it skips the busy one.
	start := time.Now()
	vm, err := e.CreateVM(ctx, api.CreateVMOptions{Environment: "debian:12", Shape: hostOnly})
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("create waited %s behind a stuck workspace", took)
	}
	e.DeleteVM(ctx, vm.VMID)

	// Delete kills the frozen VM without its help.
	start = time.Now()
	dctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if _, err := e.DeleteWorkspace(dctx, id); err != nil && !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("delete: %v", err)
	}
	t.Logf("delete of a stuck workspace took %s", time.Since(start).Round(time.Millisecond))
	if took := time.Since(start); took > removalWait+10*time.Second {
		t.Errorf("delete took %s", took)
	}
	select {
	case err := <-created:
		if err == nil {
			t.Error("the create whose guest froze succeeded")
		}
	case <-time.After(30 * time.Second):
		t.Error("the stuck create never returned")
	}
	if ids, _ := e.wss.IDs(); len(ids) != 0 {
		t.Errorf("workspaces left: %v", ids)
	}
}
