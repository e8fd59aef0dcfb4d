package api

import (
	"fmt"
	"strconv"
	"strings"
)

// Progress is one report of a long operation: which operation, which of its
// phases it is in, and how far that phase is when it can be counted. The CLI
// draws it (a live line on a terminal, one log line per phase otherwise),
// the MCP server turns it into progress notifications, and the Go SDK hands
// it to Options.Progress and to the function of WithProgress.
//
// Reports of one operation arrive in order; a phase may report many times
// as Done grows. An operation that runs another (a workspace create that
// pulls its environment) reports both, each under its own Op.
type Progress struct {
	// Op names the operation: "pull" and "push" (environments), "run",
	// "vm create", "vm start", "workspace create", "workspace start",
	// "sync push".
	Op string `json:"op"`
	// Phase is the step the operation is at, e.g. resolve, download,
	// build, verify, install, done (pulls); environment, disk, boot, seed,
	// push, done (VMs and workspaces).
	Phase string `json:"phase"`
	// PhaseIndex and PhaseCount place Phase among the operation's phases
	// (1-based), when the operation knows them in advance; else 0.
	PhaseIndex int `json:"phase_index,omitempty"`
	PhaseCount int `json:"phase_count,omitempty"`

	Environment string `json:"environment,omitempty"`
	ID          string `json:"id,omitempty"` // the VM or workspace, once it exists

	// Step is what the phase is working on: a blob (kernel, modules,
	// rootfs), a build tool (mmdebstrap, mkfs), ...
	Step string `json:"step,omitempty"`
	// Unit counts the phase's work: "bytes", "files" or "packages"; Done of
	// Total (0 when the total is not known). Empty when the phase cannot
	// be counted.
	Unit  string `json:"unit,omitempty"`
	Done  int64  `json:"done,omitempty"`
	Total int64  `json:"total,omitempty"`

	// ElapsedMs is the time since the operation started.
	ElapsedMs int64 `json:"elapsed_ms"`
	// Source is set on a pull's done: "cache", "registry" or "build".
	Source string `json:"source,omitempty"`
}

// Units of Progress.
const (
	UnitBytes    = "bytes"
	UnitFiles    = "files"
	UnitPackages = "packages"
)

// PhaseDone is the last phase of every operation.
const PhaseDone = "done"

// String renders p as one greppable log line, the form pyro prints when it
// does not draw on a terminal:
//
//	[pull] phase=download environment=debian:12 step=rootfs bytes=1048576 total=66144363
//	[workspace create] phase=seed environment=debian:12 id=0f3a... files=4000 total=10000
func (p Progress) String() string {
	op := p.Op
	if op == "" {
		op = "pull"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "[%s] phase=%s", op, p.Phase)
	if p.Environment != "" {
		fmt.Fprintf(&b, " environment=%s", p.Environment)
	}
	if p.ID != "" {
		fmt.Fprintf(&b, " id=%s", p.ID)
	}
	if p.Step != "" {
		fmt.Fprintf(&b, " step=%s", p.Step)
	}
	if p.Unit != "" && (p.Total > 0 || p.Done > 0) {
		fmt.Fprintf(&b, " %s=%d total=%d", p.Unit, p.Done, p.Total)
	}
	if p.Source != "" {
		fmt.Fprintf(&b, " source=%s", p.Source)
	}
	return b.String()
}

// Message says what p means to a person, e.g. "seeding 4,000 of 10,000
// files" or "pulling debian:12: downloading rootfs, 12.0 MiB of 63.1 MiB":
// Activity and Count together.
func (p Progress) Message() string {
	m := p.Activity()
	if c := p.Count(); c != "" {
		if p.Step != "" {
			m += ","
		}
		m += " " + c
	}
	return m
}

// Activity says what the operation is doing, without the count:
// "booting (waiting for the guest agent)", "pulling debian:12: verifying rootfs".
func (p Progress) Activity() string {
	var b strings.Builder
	switch p.Op {
	case "push":
		fmt.Fprintf(&b, "pushing %s: ", p.Environment)
	case "pull", "":
		fmt.Fprintf(&b, "pulling %s: ", p.Environment)
	}
	b.WriteString(phaseVerb(p.Phase))
	if p.Step != "" {
		b.WriteString(" " + stepText(p.Step))
	}
	return b.String()
}

// Count renders Done and Total in Unit: "4,000 of 10,000 files", "12.0 MiB
// of 63.1 MiB", "37 packages"; "" when the phase is not counted.
func (p Progress) Count() string {
	if p.Unit == "" || (p.Done == 0 && p.Total == 0) {
		return ""
	}
	f := func(n int64) string { return Thousands(n) }
	suffix := " " + p.Unit
	if p.Unit == UnitBytes {
		f, suffix = HumanBytes, ""
	}
	if p.Total > 0 {
		return f(p.Done) + " of " + f(p.Total) + suffix
	}
	return f(p.Done) + suffix
}

func stepText(step string) string {
	switch step {
	case "mmdebstrap":
		return "the root filesystem (mmdebstrap)"
	case "mkfs":
		return "the ext4 image (mkfs)"
	case "update":
		return "(apt-get update)"
	case "download":
		return "(downloading packages)"
	case "install":
		return "(installing packages)"
	case "customize":
		return "(finishing the tree)"
	case "timestamps":
		return "(pinning the image's timestamps)"
	case "unpack":
		return "(unpacking in the guest)"
	case "initramfs":
		return "(preparing the initramfs)"
	case "image":
		return "(building /workspace's filesystem)"
	case "guest":
		return "(waiting for the guest agent)"
	}
	return step
}

func phaseVerb(phase string) string {
	switch phase {
	case "resolve", "install", "download", "build", "verify", "compress", "upload", "seed", "push", "boot":
		return strings.TrimSuffix(phase, "e") + "ing"
	case "environment":
		return "preparing the environment"
	case "disk":
		return "creating the disk"
	case "exec":
		return "running the command"
	case PhaseDone:
		return "done"
	}
	return phase
}

// Thousands writes n with comma separators: 10000 is "10,000".
func Thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// HumanBytes renders n in binary units: 1536 is "1.5 KiB".
func HumanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for x := n / unit; x >= unit; x /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
