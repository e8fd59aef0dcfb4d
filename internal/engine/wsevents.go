package engine

import (
	"github.com/pyro-mcp/pyro/api"
)

// maxLoggedFiles caps the files a patch entry lists in the log (Entries
// keeps the count), so that its line stays bounded.
const maxLoggedFiles = 500

// appendFileEvent stores a file operation's entry (its sequence taken
// when the operation began), bounded, through the history's one writer
// (wslog.go); it does not count as a command, but is the workspace's
// latest activity when the record takes it in (wsState.take).
func (e *Engine) appendFileEvent(id string, entry api.LogEntry) error {
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
	return e.appendLog(id, entry)
}
