package api

import "time"

// Template statuses (Template.Status, EnvironmentTemplates.Status).
const (
	// TemplateWarm: usable; new VMs and workspaces of its shape start warm.
	TemplateWarm = "warm"
	// TemplateStale: built for an environment, agent, kernel or QEMU that
	// is no longer the one in use; `pyro env prune` removes it.
	TemplateStale = "stale"
	// TemplateRebuild: it failed to restore or its files are corrupt; the
	// next run or `pyro prepare` builds it again.
	TemplateRebuild = "rebuild"
	// TemplateCold: no template (EnvironmentTemplates.Status only).
	TemplateCold = "cold"
)

// Template is a warm-start template: a guest booted to "agent ready",
// quiesced and saved, that new VMs and workspaces of its environment and
// shape are restored from instead of booted.
type Template struct {
	ID          string `json:"id"`
	Environment string `json:"environment"`
	// Kind is "vm" (pyro run, vm create) or "workspace".
	Kind      string    `json:"kind"`
	Status    string    `json:"status"`
	Reason    string    `json:"reason,omitempty"` // why stale or to rebuild
	VCPUCount int       `json:"vcpu_count"`
	MemMiB    int       `json:"mem_mib"`
	Network   bool      `json:"network"`
	DiskGiB   int       `json:"disk_gib,omitempty"` // a workspace template's data disk
	Backend   string    `json:"backend"`            // e.g. "qemu-tcg"
	CreatedAt time.Time `json:"created_at"`
	// Pyro is the version of pyro that built it.
	Pyro string `json:"pyro"`
	// BuildMs is the time the build took: a cold boot, then SaveMs to
	// quiesce the guest and save it.
	BuildMs int64 `json:"build_ms"`
	SaveMs  int64 `json:"save_ms"`
	// The files: the device state, the memory file (its allocated size:
	// the pages the guest touched) and the root disk layer.
	StateBytes  int64 `json:"state_bytes"`
	MemoryBytes int64 `json:"memory_bytes"`
	RootBytes   int64 `json:"root_bytes"`
	// Built is set by Prepare on the templates it built (rather than found).
	Built bool `json:"built,omitempty"`
}

// PrepareResult is what `pyro prepare --json` prints.
type PrepareResult struct {
	Templates []Template `json:"templates"`
	TotalMs   int64      `json:"total_ms"`
}

// EnvironmentTemplates says whether new VMs and workspaces of an
// environment start warm: `pyro doctor --environment ENV`.
type EnvironmentTemplates struct {
	Environment string `json:"environment"`
	// Status is "warm" (a template fits the default shape), "stale" (only
	// outdated ones), "rebuild" or "cold" (none), for a `pyro run` with
	// the default shape; Workspace is the same for a default workspace.
	Status    string     `json:"status"`
	Workspace string     `json:"workspace"`
	Policy    string     `json:"policy"` // PYRO_TEMPLATES: "auto", "on" or "off"
	Templates []Template `json:"templates"`
	Hint      string     `json:"hint,omitempty"`
}
