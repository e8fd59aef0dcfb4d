package engine

import (
	"path/filepath"

	"github.com/pyro-mcp/pyro/api"
)

// maxLoggedFiles caps the files a patch entry lists in the log (Entries
// keeps the count), so that its line stays bounded.
const maxLoggedFiles = 500

// appendEvent stores an entry that is not a command (a file operation),
// bounded, under the record lock; it does not count as a command.
func (e *Engine) appendEvent(id string, entry api.LogEntry) error {
	if ev := entry.FileEvent; ev != nil {
		c := *ev
		c.Path, _ = capText(c.Path, maxLoggedText, false)
		c.SourcePath, _ = capText(c.SourcePath, maxLoggedText, false)
		c.OutputPath, _ = capText(c.OutputPath, maxLoggedText, false)
		c.Dest, _ = capText(c.Dest, maxLoggedText, false)
		c.Files = append([]api.PatchFile(nil), c.Files[:min(len(c.Files), maxLoggedFiles)]...)
		for i := range c.Files {
			c.Files[i].Path, _ = capText(c.Files[i].Path, maxLoggedText, false)
			c.Files[i].OldPath, _ = capText(c.Files[i].OldPath, maxLoggedText, false)
		}
		entry.FileEvent = &c
	}
	line, err := encodeEntry(entry)
	if err != nil {
		return err
	}
	lock, err := e.wss.Lock(id)
	if err != nil {
		return err
	}
	defer lock.Unlock()
	return appendLine(filepath.Join(e.wss.Path(id), LogFile), line)
}
