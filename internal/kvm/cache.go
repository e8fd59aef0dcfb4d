package kvm

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/pyro-mcp/pyro/internal/atomicfile"
	"github.com/pyro-mcp/pyro/internal/flock"
	"github.com/pyro-mcp/pyro/internal/paths"
)

// PendingTTL is how long an inconclusive test boot spares callers without
// Recheck from trying again (they treat KVM as not usable meanwhile).
const PendingTTL = 10 * time.Minute

// cacheVersion changes when what may be cached changes: entries of 2.4
// could hold a hang as "unusable", so they are never read.
const cacheVersion = "v2"

// DefaultCacheFile is <cache dir>/kvm-probe.json. It lives with the
// environments rather than in the runtime directory so that every pyro
// sharing a cache (tests included) probes once per host boot, and so that
// the runtime directory holds nothing but live VMs. Entries are keyed by the
// boot id, so a reboot invalidates them.
func DefaultCacheFile() string { return filepath.Join(paths.CacheDir(), "kvm-probe.json") }

// cacheEntry is one line of the cache file. Three kinds share the file,
// told apart by their key: a verdict (the hash), an inconclusive note
// ("pending:" + hash) and the last boot time per accelerator ("last:...").
type cacheEntry struct {
	Verdict        string    `json:"verdict,omitempty"`
	Usable         bool      `json:"usable,omitempty"`
	Reason         string    `json:"reason,omitempty"`
	BootMillis     int64     `json:"boot_ms,omitempty"`
	DeadlineMillis int64     `json:"deadline_ms,omitempty"`
	Deadline       string    `json:"deadline,omitempty"`
	At             time.Time `json:"at,omitzero"`
}

// cache is the probe cache seen for one probe's key.
type cache struct {
	file   string // "" when caching is off
	key    string
	kernel string
	bootID string
}

func openCache(opts Options) *cache {
	c := &cache{file: opts.CacheFile, kernel: opts.Kernel, bootID: bootID()}
	if c.file == "" {
		c.file = DefaultCacheFile()
	}
	if c.file == "-" || c.bootID == "" {
		c.file = ""
		return c
	}
	c.key = cacheKey(c.bootID, opts.accel(), opts.QEMU, opts.Kernel)
	return c
}

func (c *cache) verdict() (Result, bool) {
	e, ok := c.read(c.key)
	if !ok || (e.Verdict != Usable && e.Verdict != Unusable) {
		return Result{}, false
	}
	return e.result(c.kernel), true
}

func (c *cache) pending() (Result, bool) {
	e, ok := c.read("pending:" + c.key)
	if !ok || time.Since(e.At) > PendingTTL {
		return Result{}, false
	}
	r := e.result(c.kernel)
	r.Reason += fmt.Sprintf(" (noted at %s; tried again after %s, or by pyro doctor)", e.At.Local().Format("15:04:05"), PendingTTL)
	return r, true
}

func (e cacheEntry) result(kernel string) Result {
	return Result{Kernel: kernel, Verdict: e.Verdict, Usable: e.Usable, Reason: e.Reason, BootMillis: e.BootMillis,
		DeadlineMillis: e.DeadlineMillis, Deadline: e.Deadline, Cached: true}
}

func entryOf(r Result) cacheEntry {
	return cacheEntry{Verdict: r.Verdict, Usable: r.Usable, Reason: r.Reason, BootMillis: r.BootMillis,
		DeadlineMillis: r.DeadlineMillis, Deadline: r.Deadline, At: time.Now().UTC()}
}

// storeVerdict caches a definite verdict and drops any inconclusive note.
func (c *cache) storeVerdict(r Result) {
	if !r.Definite() {
		return
	}
	c.update(func(m map[string]cacheEntry) {
		m[c.key] = entryOf(r)
		delete(m, "pending:"+c.key)
	})
}

func (c *cache) storePending(r Result) {
	c.update(func(m map[string]cacheEntry) { m["pending:"+c.key] = entryOf(r) })
}

func (c *cache) lastKey(accel string) string { return "last:" + accel + ":" + c.bootID }

// lastBoot is the last boot time measured under accel since the host
// booted (test boots and real guests alike), or 0.
func (c *cache) lastBoot(accel string) time.Duration {
	e, ok := c.read(c.lastKey(accel))
	if !ok {
		return 0
	}
	return time.Duration(e.BootMillis) * time.Millisecond
}

func (c *cache) storeLastBoot(accel string, took time.Duration) {
	c.update(func(m map[string]cacheEntry) {
		m[c.lastKey(accel)] = cacheEntry{BootMillis: took.Milliseconds(), At: time.Now().UTC()}
	})
}

// RecordBoot notes that a real guest booted with qemu and kernel under
// accel ("kvm" or "tcg") in took: a definite Usable verdict for that key
// (so a doctor run after a busy minute sees the truth), and the latest
// boot time deadlines scale from. Errors are ignored: it is a cache.
func RecordBoot(accel, qemu, kernel string, took time.Duration) {
	if accel == "" || qemu == "" || kernel == "" {
		return
	}
	c := openCache(Options{QEMU: qemu, Kernel: kernel, Accel: accel})
	if c.file == "" {
		return
	}
	r := Result{Verdict: Usable, Usable: true, BootMillis: took.Milliseconds(),
		Reason: fmt.Sprintf("a guest booted under -accel %s in %d ms at %s", accel, took.Milliseconds(), time.Now().Format("15:04:05"))}
	c.update(func(m map[string]cacheEntry) {
		if old, ok := m[c.key]; !ok || old.Verdict != Usable {
			m[c.key] = entryOf(r)
		}
		delete(m, "pending:"+c.key)
		m[c.lastKey(accel)] = cacheEntry{BootMillis: took.Milliseconds(), At: time.Now().UTC()}
	})
}

func (c *cache) read(key string) (cacheEntry, bool) {
	if c.file == "" {
		return cacheEntry{}, false
	}
	m := readAll(c.file)
	e, ok := m[key]
	return e, ok
}

func readAll(file string) map[string]cacheEntry {
	m := map[string]cacheEntry{}
	if b, err := os.ReadFile(file); err == nil {
		_ = json.Unmarshal(b, &m)
	}
	return m
}

// update rewrites the cache file under a short lock, so that concurrent
// writers do not drop each other's entries.
func (c *cache) update(f func(map[string]cacheEntry)) {
	if c.file == "" {
		return
	}
	if err := paths.EnsurePrivate(filepath.Dir(c.file)); err != nil {
		return
	}
	unlock, err := lockFile(context.Background(), c.file+".lock")
	if err != nil {
		return
	}
	defer unlock()
	m := readAll(c.file)
	for k := range m {
		// Entries of earlier host boots and earlier cache versions are dead weight.
		stale := strings.HasPrefix(k, "last:") && !strings.HasSuffix(k, c.bootID)
		if strings.HasPrefix(k, "pending:") && time.Since(m[k].At) > PendingTTL {
			stale = true
		}
		if stale {
			delete(m, k)
		}
	}
	if len(m) > 64 {
		m = map[string]cacheEntry{}
	}
	f(m)
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return
	}
	_ = atomicfile.WriteFile(c.file, b, 0o600)
}

// lock serialises test boots of one key across processes.
func (c *cache) lock(ctx context.Context) (func(), error) {
	if c.file == "" {
		return func() {}, nil
	}
	dir := filepath.Join(filepath.Dir(c.file), "locks")
	if err := paths.EnsurePrivate(dir); err != nil {
		return func() {}, nil
	}
	return lockFile(ctx, filepath.Join(dir, "kvm-probe-"+c.key[:16]+".lock"))
}

// lockFile takes an exclusive lock on path (internal/flock), waiting
// until ctx is done.
func lockFile(ctx context.Context, path string) (func(), error) {
	l, err := flock.Acquire(ctx, path, flock.Exclusive, nil)
	if err != nil {
		return nil, err
	}
	return l.Unlock, nil
}

func bootID() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// cacheKey ties a verdict to this boot of the host, this QEMU binary and
// this kernel; a change of any of them re-runs the test.
func cacheKey(boot, accel, qemu, kernel string) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s|%s|%s|%s|%s", cacheVersion, boot, accel, fileID(qemu), fileID(kernel))
	return hex.EncodeToString(h.Sum(nil))[:32]
}

func fileID(p string) string {
	st, err := os.Stat(p)
	if err != nil {
		return p
	}
	return fmt.Sprintf("%s:%d:%d", p, st.Size(), st.ModTime().UnixNano())
}
