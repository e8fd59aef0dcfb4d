package engine

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"syscall"
	"time"

	"github.com/pyro-mcp/pyro/api"
	"github.com/pyro-mcp/pyro/internal/errdefs"
	"github.com/pyro-mcp/pyro/internal/state"
)

// A workspace's command history is logs.jsonl in its directory: one JSON
// entry per line, appended under the record lock, kept whole until the
// workspace is deleted (never rotated). Every stored entry is bounded, so
// that any entry fits the reader's line buffer and the file grows by at
// most MaxLogEntry per command.
const (
	// LogFile is the history's file name in a workspace's directory.
	LogFile = "logs.jsonl"
	// MaxLoggedOutput caps stdout and stderr kept per command.
	MaxLoggedOutput = 64 << 10
	// MaxLoggedCommand caps the bytes of a command's argv kept per entry.
	MaxLoggedCommand = 64 << 10
	// maxLoggedText caps the working directory and the error kept.
	maxLoggedText = 4 << 10
	// MaxLogEntry bounds one stored line. JSON escapes a byte in at most
	// six (\u0000), so the capped fields above stay under it.
	MaxLogEntry = 6*(MaxLoggedCommand+2*MaxLoggedOutput+2*maxLoggedText) + 64<<10
)

// boundEntry caps every variable-size field of an entry.
func boundEntry(le *api.LogEntry) {
	le.Stdout, le.StdoutTruncated = capText(le.Stdout, MaxLoggedOutput, le.StdoutTruncated)
	le.Stderr, le.StderrTruncated = capText(le.Stderr, MaxLoggedOutput, le.StderrTruncated)
	le.Cwd, _ = capText(le.Cwd, maxLoggedText, false)
	le.Error, _ = capText(le.Error, maxLoggedText, false)
	left := MaxLoggedCommand
	for i, a := range le.Command {
		if len(a) > left {
			le.Command = append(le.Command[:i:i], a[:left])
			le.CommandTruncated = true
			break
		}
		left -= len(a)
	}
}

func capText(s string, n int, truncated bool) (string, bool) {
	if len(s) > n {
		return s[:n], true
	}
	return s, truncated
}

// encodeEntry is the stored line of an entry, newline included.
func encodeEntry(le api.LogEntry) ([]byte, error) {
	boundEntry(&le)
	data, err := json.Marshal(le)
	if err != nil {
		return nil, err
	}
	if len(data) >= MaxLogEntry {
		return nil, fmt.Errorf("log entry %d is %d bytes, over the %d bound", le.Sequence, len(data), MaxLogEntry)
	}
	return append(data, '\n'), nil
}

// writeEntry appends entry, bounded, to workspace id's history: the one
// writer of every log line (commands, snapshot/reset/fork events, shell
// and service events). The caller holds the record lock.
func (e *Engine) writeEntry(id string, entry api.LogEntry) error {
	line, err := encodeEntry(entry)
	if err != nil {
		return err
	}
	return appendLine(filepath.Join(e.wss.Path(id), LogFile), line)
}

// appendLog stores entry, bounded, under the record lock: one durable
// append. The record is not rewritten: its counts take the entry in when
// it is next read (foldHistory).
func (e *Engine) appendLog(id string, entry api.LogEntry) error {
	lock, err := e.wss.Lock(id)
	if err != nil {
		return err
	}
	defer lock.Unlock()
	return e.writeEntry(id, entry)
}

// foldHistory brings ws's counts up to the end of the history at path,
// taking in every whole entry after HistoryFolded (take). A damaged entry
// is passed over (LogsWorkspace names it); a last line without its
// newline is an append under way, left for a later read. Reads take no
// lock: this changes only ws, and a writer holding the lock writes the
// counts back with the record.
func (ws *wsState) foldHistory(path string) {
	f, err := os.Open(path)
	if err != nil {
		if ws.HistoryFolded == nil {
			ws.HistoryFolded = new(int64) // no history yet
		}
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return
	}
	size := fi.Size()
	if ws.HistoryFolded == nil || *ws.HistoryFolded > size {
		// A record of an earlier release counts its whole history; a
		// history cut short by hand is taken as it now is.
		ws.HistoryFolded = &size
		return
	}
	off := *ws.HistoryFolded
	if off == size {
		return
	}
	br := bufio.NewReaderSize(io.NewSectionReader(f, off, size-off), 64<<10)
	for {
		line, err := readLine(br)
		if err != nil || line == nil {
			break // the end, an append under way, or a line too long to take
		}
		off += int64(len(line)) + 1
		var le foldEntry
		if json.Unmarshal(line, &le) == nil {
			ws.take(le)
		}
	}
	ws.HistoryFolded = &off
}

// foldEntry is the part of an api.LogEntry the counts take in (a smaller
// type for encoding/json to learn in a process that reads one record).
type foldEntry struct {
	Kind       string    `json:"kind"`
	Sequence   int       `json:"sequence"`
	Command    []string  `json:"command"`
	ExitCode   int       `json:"exit_code"`
	TimedOut   bool      `json:"timed_out"`
	StartedAt  time.Time `json:"started_at"`
	DurationMs int64     `json:"duration_ms"`
}

// take counts one history entry: every entry's sequence is taken;
// commands are counted and the last one kept; commands and file
// operations are activity, which ends when they did.
func (ws *wsState) take(le foldEntry) {
	if le.Sequence >= ws.NextSequence {
		ws.NextSequence = le.Sequence + 1
	}
	switch le.Kind {
	case api.LogExec, "": // "": written by 2.4
		ws.CommandCount++
		if last := ws.LastCommand; last == nil || le.Sequence > last.Sequence {
			ws.LastCommand = &api.CommandSummary{Sequence: le.Sequence, Command: le.Command, ExitCode: le.ExitCode,
				TimedOut: le.TimedOut, StartedAt: le.StartedAt, DurationMs: le.DurationMs}
		}
	case api.LogFileWrite, api.LogPatch, api.LogSync, api.LogExport:
	default:
		return // snapshot, reset, fork, shell and service events: their callers record activity
	}
	end := le.StartedAt.Add(time.Duration(le.DurationMs) * time.Millisecond).UTC()
	if ws.LastActivityAt == nil || end.After(*ws.LastActivityAt) {
		ws.LastActivityAt = &end
	}
}

// logEvent records a snapshot, reset or fork in the log, under the
// caller's lock; the operation itself is done, so a failure only warns.
func (e *Engine) logEvent(id string, entry api.LogEntry) {
	if err := e.writeEntry(id, entry); err != nil {
		e.log.Warn("logging workspace event", "workspace_id", id, "kind", entry.Kind, "err", err)
	}
}

// appendLine appends one whole line to path or nothing: a write cut short
// (a full disk) is undone, so that the next line does not run into half of
// this one. A torn last line a killed process left behind (no newline) is
// the unacknowledged end of a write and is cut off first.
func appendLine(path string, line []byte) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	end, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return err
	}
	if end > 0 {
		var last [1]byte
		if _, err := f.ReadAt(last[:], end-1); err != nil {
			return err
		}
		if last[0] != '\n' {
			if end, err = tornTail(f, end); err != nil {
				return err
			}
		}
	}
	if _, err := f.WriteAt(line, end); err != nil {
		f.Truncate(end)
		return state.WriteError(err, path)
	}
	// fdatasync: the line and the file's new size, not its times.
	if err := syscall.Fdatasync(int(f.Fd())); err != nil {
		f.Truncate(end)
		return state.WriteError(err, path)
	}
	return nil
}

// tornTail cuts f back to just after its last newline and returns the new
// end.
func tornTail(f *os.File, end int64) (int64, error) {
	buf := make([]byte, 64<<10)
	for off := end; off > 0; {
		n := int64(len(buf))
		if off < n {
			n = off
		}
		off -= n
		if _, err := f.ReadAt(buf[:n], off); err != nil {
			return 0, err
		}
		if i := bytes.LastIndexByte(buf[:n], '\n'); i >= 0 {
			cut := off + int64(i) + 1
			return cut, f.Truncate(cut)
		}
	}
	return 0, f.Truncate(0)
}

// LogsWorkspace returns the persisted command history, in sequence order.
// A damaged entry is an error naming the file and the line: the history is
// never returned with holes in it.
func (e *Engine) LogsWorkspace(ctx context.Context, ref string) (*api.WorkspaceLogs, error) {
	id, err := e.resolve(e.wss, ref)
	if err != nil {
		return nil, err
	}
	out := &api.WorkspaceLogs{WorkspaceID: id, Entries: []api.LogEntry{}}
	path := filepath.Join(e.wss.Path(id), LogFile)
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return out, nil
		}
		return nil, err
	}
	defer f.Close()
	entries, err := readLog(f, path)
	if err != nil {
		return nil, err
	}
	sort.SliceStable(entries, func(i, j int) bool { return entries[i].Sequence < entries[j].Sequence })
	markResets(entries)
	out.Entries, out.Count = entries, len(entries)
	return out, nil
}

// readLog parses a history. The last line may lack its newline while an
// append is under way (readers take no lock): it is not there yet.
func readLog(r io.Reader, path string) ([]api.LogEntry, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	entries := []api.LogEntry{}
	for n := 1; ; n++ {
		line, err := readLine(br)
		if err == io.EOF {
			return entries, nil
		}
		if errors.Is(err, errLongLine) {
			return nil, damaged(path, n, fmt.Errorf("line longer than %d bytes", MaxLogEntry))
		}
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", path, err)
		}
		if line == nil {
			return entries, nil // an append in progress
		}
		var le api.LogEntry
		if err := json.Unmarshal(line, &le); err != nil {
			return nil, damaged(path, n, err)
		}
		if le.Kind == "" {
			le.Kind = api.LogExec // written by 2.4
		}
		entries = append(entries, le)
	}
}

var errLongLine = errors.New("line too long")

// readLine returns the next line without its newline, nil for a last line
// without one, io.EOF at the end, or errLongLine past MaxLogEntry.
func readLine(br *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		chunk, err := br.ReadSlice('\n')
		line = append(line, chunk...)
		if len(line) > MaxLogEntry {
			return nil, errLongLine
		}
		switch {
		case err == nil:
			return line[:len(line)-1], nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case err == io.EOF && len(line) == 0:
			return nil, io.EOF
		case err == io.EOF:
			return nil, nil
		default:
			return nil, err
		}
	}
}

func damaged(path string, line int, err error) error {
	return errdefs.Wrap(errdefs.ErrFailedPrecondition, err,
		"the command history is damaged there (edited by hand, or a disk error); the workspace itself is unaffected. Repair or remove that line to read the rest",
		"%s:%d: damaged log entry", path, line)
}

// markResets sets ResetBy on the entries each reset rolled back: those
// after the snapshot it went back to and before the reset itself.
func markResets(entries []api.LogEntry) {
	for _, r := range entries {
		if r.Kind != api.LogReset {
			continue
		}
		for i := range entries {
			e := &entries[i]
			if e.ResetBy == 0 && e.Sequence > r.SnapshotSequence && e.Sequence < r.Sequence {
				e.ResetBy = r.Sequence
			}
		}
	}
}
