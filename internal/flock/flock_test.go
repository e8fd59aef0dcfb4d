package flock

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"
)

func TestModes(t *testing.T) {
	tests := []struct {
		name        string
		held, asked Mode
		wantFree    bool
	}{
		{"exclusive blocks exclusive", Exclusive, Exclusive, false},
		{"exclusive blocks shared", Exclusive, Shared, false},
		{"shared blocks exclusive", Shared, Exclusive, false},
		{"shared admits shared", Shared, Shared, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "l")
			held, err := Acquire(t.Context(), p, tt.held, nil)
			if err != nil {
				t.Fatal(err)
			}
			// flock belongs to an open file description, so a second open
			// in this process competes like another process would.
			l, ok, err := Try(p, tt.asked)
			if err != nil || ok != tt.wantFree {
				t.Fatalf("Try = %v, %v; want free=%v", ok, err, tt.wantFree)
			}
			l.Unlock()
			held.Unlock()
			held.Unlock() // twice is fine
			if l, ok, _ := Try(p, Exclusive); !ok {
				t.Fatal("lock still held after Unlock")
			} else {
				l.Unlock()
			}
		})
	}
}

func TestAcquireWaitsAndCancels(t *testing.T) {
	p := filepath.Join(t.TempDir(), "l")
	held, err := Acquire(t.Context(), p, Exclusive, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	waited := 0
	start := time.Now()
	if _, err := Acquire(ctx, p, Exclusive, func() { waited++ }); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want deadline", err)
	}
	if waited != 1 || time.Since(start) > 2*time.Second {
		t.Fatalf("onWait called %d times, took %s", waited, time.Since(start))
	}

	got := make(chan error, 1)
	go func() {
		l, err := Acquire(t.Context(), p, Exclusive, nil)
		l.Unlock()
		got <- err
	}()
	time.Sleep(20 * time.Millisecond)
	held.Unlock()
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("waiter never got the released lock")
	}
}

func TestAcquireBadPath(t *testing.T) {
	if _, err := Acquire(t.Context(), filepath.Join(t.TempDir(), "no", "such", "l"), Exclusive, nil); err == nil {
		t.Fatal("want an error for a lock in a missing directory")
	}
}
