package engine

import (
	"bufio"
	"context"
	"io"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/pyro-mcp/pyro/api"
	"github.com/pyro-mcp/pyro/internal/agentproto"
	"github.com/pyro-mcp/pyro/internal/archive"
	"github.com/pyro-mcp/pyro/internal/errdefs"
	"github.com/pyro-mcp/pyro/internal/progress"
)

// phasePush copies host content into a started workspace.
const phasePush = "push"

// stepUnpack is the end of a seed or push: everything is sent, and the
// guest checks and unpacks it.
const stepUnpack = "unpack"

// PushWorkspaceSync imports a host directory or archive into a started
// workspace, at /workspace or dest under it.
func (e *Engine) PushWorkspaceSync(ctx context.Context, ref, sourcePath, dest string) (*api.SyncResult, error) {
	defer e.enter()()
	ctx, op := e.start(ctx, "sync push", phaseBoot, phasePush)
	d, err := cleanDest(dest)
	if err != nil {
		return nil, err
	}
	rec, err := e.loadWorkspace(ref)
	if err != nil {
		return nil, err
	}
	// A snapshot, reset or fork waits for the push, and the reverse.
	unlockOps, err := e.opsLock(rec.ID, false)
	if err != nil {
		return nil, err
	}
	defer unlockOps()
	abs, err := filepath.Abs(sourcePath)
	if err != nil {
		return nil, err
	}
	kind, err := archive.Kind(abs)
	if err != nil {
		return nil, err
	}
	// A directory is cheap to walk first, which gives the count of files
	// that progress reports out of; an archive would have to be read twice.
	total := 0
	if kind == archive.ModeDirectory {
		// Names and sizes only: Write reads and hashes the contents once,
		// as it sends them.
		st, err := archive.Validate(ctx, abs, archive.DefaultLimits)
		if err != nil {
			return nil, err
		}
		total = st.Entries
	}
	// Logged from here on (kind sync), failed or not.
	seq, err := e.nextSequence(rec.ID)
	if err != nil {
		return nil, err
	}
	fop := &fileOp{e: e, id: rec.ID, seq: seq, started: time.Now().UTC().Truncate(time.Millisecond), unlock: func() {}}
	ev := &api.FileEvent{SourcePath: abs, Dest: d}
	rec, _, err = e.ensureRunning(ctx, rec.ID)
	if err != nil {
		return nil, fop.log(api.LogSync, ev, err)
	}
	op.Phase(phasePush)
	st, err := e.push(ctx, rec, abs, d, total)
	if supervisorGone(err) {
		// Its VMM died just now: nothing was sent; boot and push once more.
		if again, rerr := e.restartGone(ctx, rec.ID); rerr == nil {
			rec = again
			st, err = e.push(ctx, rec, abs, d, total)
		}
	}
	if err == nil {
		ev.Entries, ev.Bytes = st.Entries, st.Bytes
	}
	if err := fop.log(api.LogSync, ev, err); err != nil {
		return nil, err
	}
	op.Done()
	return &api.SyncResult{WorkspaceID: rec.ID, SourcePath: abs, Dest: d, Mode: st.Mode, Entries: st.Entries, Bytes: st.Bytes,
		Digest: st.Digest, DurationMs: op.Elapsed().Milliseconds()}, nil
}

// push streams src into the guest under dest, reporting the files sent out
// of total (0 when unknown) in the current phase of the operation in ctx.
func (e *Engine) push(ctx context.Context, rec *vmRecord, src, dest string, total int) (*archive.Stats, error) {
	c, err := e.dial(ctx, rec)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	op := progress.From(ctx)
	phase := op.Current().Phase
	pr, pw := io.Pipe()
	var st archive.Stats
	done := make(chan error, 1)
	go func() {
		// Whole frames' worth per pipe hand-off, not the tar writer's
		// 512-byte headers and 32 KiB copies.
		bw := bufio.NewWriterSize(pw, agentproto.ChunkSize)
		var err error
		st, err = archive.Write(ctx, src, bw, archive.DefaultLimits)
		if err == nil {
			err = bw.Flush()
		}
		pw.CloseWithError(err)
		done <- err
	}()
	counter := &tarCounter{r: pr, onEntry: func(n int64) { op.Count(api.UnitFiles, n, int64(total)) },
		onEnd: func(n int64) {
			if total == 0 {
				op.Count(api.UnitFiles, n, n) // the count, now known
			}
			op.PhaseStep(phase, stepUnpack)
		}}
	// A guest that stops taking the archive, or never answers once it has
	// all of it, is given up on: the caller may hold the record's lock.
	wctx, touch, fired, stop := idleWatch(ctx, baseGuestIdle)
	defer stop()
	_, perr := c.PutArchive(wctx, agentproto.PutArchiveRequest{Dest: dest, Root: api.WorkspaceRoot, MaxBytes: archive.DefaultLimits.MaxBytes + 64<<20},
		&touchReader{r: counter, touch: touch})
	pr.CloseWithError(io.ErrClosedPipe)
	werr := <-done
	if fired() {
		return nil, errdefs.New(errdefs.ErrTimeout, "the guest stopped answering; check its status, or delete it",
			"copying into %s %s: the guest took no data and gave no answer for %s", rec.Kind, rec.ID, stretch(baseGuestIdle).Round(time.Second))
	}
	if werr != nil {
		return nil, werr
	}
	if perr != nil {
		return nil, e.noSpace(rec, perr)
	}
	return &st, nil
}

// cleanDest validates a push destination and returns it absolute under /workspace.
func cleanDest(dest string) (string, error) {
	if dest == "" {
		return api.WorkspaceRoot, nil
	}
	p := dest
	if !path.IsAbs(p) {
		p = path.Join(api.WorkspaceRoot, p)
	}
	p = path.Clean(p)
	if p != api.WorkspaceRoot && !strings.HasPrefix(p, api.WorkspaceRoot+"/") {
		return "", errdefs.New(errdefs.ErrInvalidArgument, "give `dest` as /workspace or a directory under it, e.g. /workspace/src",
			"destination %q is outside /workspace", dest)
	}
	return p, nil
}

// tarCounter passes a tar stream through and counts its members as their
// headers go by, without copying: onEntry gets the count so far, onEnd the
// total once the stream's end marker has been read.
type tarCounter struct {
	r       io.Reader
	onEntry func(n int64)
	onEnd   func(n int64)

	pos, next int64 // bytes read; offset of the next header
	hdr       [512]byte
	hn        int // bytes of hdr filled
	entries   int64
	ended     bool
}

func (t *tarCounter) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	t.scan(p[:n])
	if err == io.EOF && !t.ended {
		t.ended = true
		t.onEnd(t.entries)
	}
	return n, err
}

func (t *tarCounter) scan(b []byte) {
	for len(b) > 0 && !t.ended {
		if t.pos < t.next {
			skip := int(min(t.next-t.pos, int64(len(b))))
			t.pos += int64(skip)
			b = b[skip:]
			continue
		}
		k := copy(t.hdr[t.hn:], b)
		t.hn += k
		t.pos += int64(k)
		b = b[k:]
		if t.hn < len(t.hdr) {
			return
		}
		t.hn = 0
		if isZeroBlock(t.hdr[:]) {
			t.next = t.pos // end-of-archive blocks
			continue
		}
		t.next = t.pos + (tarSize(t.hdr[124:136])+511)/512*512
		switch t.hdr[156] {
		case 'x', 'g', 'L', 'K': // PAX and GNU headers describe the next member
		default:
			t.entries++
			t.onEntry(t.entries)
		}
	}
}

// tarSize decodes a header's size field: octal digits, or base-256 when
// the high bit of its first byte is set.
func tarSize(f []byte) int64 {
	if len(f) > 0 && f[0]&0x80 != 0 {
		var n int64
		for i, c := range f {
			if i == 0 {
				c &= 0x7f
			}
			n = n<<8 | int64(c)
		}
		return n
	}
	n, _ := strconv.ParseInt(strings.Trim(string(f), " \x00"), 8, 64)
	return n
}

func isZeroBlock(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
