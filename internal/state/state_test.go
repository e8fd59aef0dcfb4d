package state

import (
	"errors"
	"os"
	"sync"
	"testing"

	"github.com/pyro-mcp/pyro/internal/errdefs"
)

type rec struct {
	ID string `json:"id"`
	N  int    `json:"n"`
}

func TestResolvePrefixes(t *testing.T) {
	s, err := Open(t.TempDir(), "vms", "vm")
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"abc123", "abd456", "ffff00"} {
		if _, err := s.Create(id); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		ref     string
		want    string
		wantErr error
	}{
		{"abc123", "abc123", nil},
		{"abc", "abc123", nil},
		{"f", "ffff00", nil},
		{"ab", "", errdefs.ErrConflict},
		{"zz", "", errdefs.ErrNotFound},
		{"", "", errdefs.ErrInvalidArgument},
		{"../etc", "", errdefs.ErrInvalidArgument},
	}
	for _, tc := range tests {
		got, err := s.Resolve(tc.ref)
		if tc.wantErr != nil {
			if !errors.Is(err, tc.wantErr) {
				t.Errorf("Resolve(%q) error = %v, want %v", tc.ref, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("Resolve(%q) = %q, %v; want %q", tc.ref, got, err, tc.want)
		}
	}
}

func TestWriteReadRemoveAndPrivacy(t *testing.T) {
	s, err := Open(t.TempDir(), "workspaces", "workspace")
	if err != nil {
		t.Fatal(err)
	}
	dir, err := s.Create("id1")
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(dir); fi.Mode().Perm() != 0o700 {
		t.Errorf("object dir mode = %v, want 0700", fi.Mode().Perm())
	}
	if fi, _ := os.Stat(s.Dir); fi.Mode().Perm() != 0o700 {
		t.Errorf("store dir mode = %v, want 0700", fi.Mode().Perm())
	}
	if err := s.Write("id1", rec{ID: "id1", N: 7}); err != nil {
		t.Fatal(err)
	}
	var got rec
	if err := s.Read("id1", &got); err != nil || got.N != 7 {
		t.Fatalf("Read = %+v, %v", got, err)
	}
	if _, err := s.Create("id1"); !errors.Is(err, errdefs.ErrAlreadyExists) {
		t.Errorf("second Create error = %v, want ErrAlreadyExists", err)
	}
	if err := s.Remove("id1"); err != nil {
		t.Fatal(err)
	}
	if err := s.Read("id1", &got); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("Read after Remove error = %v, want ErrNotFound", err)
	}
	if ids, _ := s.IDs(); len(ids) != 0 {
		t.Errorf("IDs after Remove = %v", ids)
	}
}

func TestLockSerialisesWriters(t *testing.T) {
	s, err := Open(t.TempDir(), "vms", "vm")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create("x"); err != nil {
		t.Fatal(err)
	}
	if err := s.Write("x", rec{ID: "x"}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l, err := s.Lock("x")
			if err != nil {
				t.Error(err)
				return
			}
			defer l.Unlock()
			var r rec
			if err := s.Read("x", &r); err != nil {
				t.Error(err)
				return
			}
			r.N++
			if err := s.Write("x", r); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	var r rec
	if err := s.Read("x", &r); err != nil || r.N != 20 {
		t.Fatalf("after 20 locked increments N = %d, %v", r.N, err)
	}
}

// loaded is a record that notes where it was loaded from.
type loaded struct {
	N   int `json:"n"`
	dir string
}

func (l *loaded) Loaded(dir string) { l.dir = dir }

// Read lets a Loader complete itself from its directory, after the JSON.
func TestReadLoader(t *testing.T) {
	s, err := Open(t.TempDir(), "workspaces", "workspace")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create("id1"); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteUnsynced("id1", &loaded{N: 7}); err != nil {
		t.Fatal(err)
	}
	var got loaded
	if err := s.Read("id1", &got); err != nil {
		t.Fatal(err)
	}
	if got.N != 7 || got.dir != s.Path("id1") {
		t.Errorf("read %+v, want n 7 from %s", got, s.Path("id1"))
	}
}
