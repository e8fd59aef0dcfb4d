package api

import "time"

// Environment is one catalog entry and its install state: an element of
// `pyro env list --json`'s "environments".
type Environment struct {
	Name             string `json:"name"`
	Version          string `json:"version"`
	Description      string `json:"description"`
	Default          bool   `json:"default"`
	Installed        bool   `json:"installed"`
	InstalledVersion string `json:"installed_version,omitempty"`
	Outdated         bool   `json:"outdated"` // installed, but an older recipe than the catalog's
	Source           string `json:"source,omitempty"`
	DiskBytes        int64  `json:"disk_bytes,omitempty"` // bytes used on disk by its blobs (sparse)
}

// EnvironmentList is `pyro env list --json` and vm_list_environments: the
// catalog and its version.
type EnvironmentList struct {
	CatalogVersion string        `json:"catalog_version"`
	Environments   []Environment `json:"environments"`
}

// InstalledEnvironment locates an installed environment's files. All paths
// are absolute and point into the content-addressed cache; the files are
// immutable for as long as a live VM or workspace uses them.
type InstalledEnvironment struct {
	Name          string `json:"name"`           // "debian:12"
	Version       string `json:"version"`        // environment (recipe) version, e.g. "2.4.0-1"
	KernelVersion string `json:"kernel_version"` // uname -r of the guest kernel, e.g. "6.1.0-41-cloud-amd64"
	KernelPath    string `json:"kernel_path"`    // the bzImage (vmlinuz) as Debian ships it
	// ModulesPath is a newc cpio archive holding lib/modules/<KernelVersion>/...
	// with the modules a guest needs; the engine appends it to the agent's
	// initramfs (the kernel accepts concatenated cpio archives).
	ModulesPath string `json:"modules_path"`
	// RootfsPath is a raw ext4 image of the Debian root filesystem (label
	// "root"). Nothing writes to it: each VM gets its own writable disk.
	RootfsPath string `json:"rootfs_path"`
	// Digests of the three blobs, "sha256:<hex>" (a rootfs installed by
	// 2.5 or later: "sparse-sha256:<hex>", see docs/reference/env.md).
	KernelDigest  string `json:"kernel_digest"`
	ModulesDigest string `json:"modules_digest"`
	RootfsDigest  string `json:"rootfs_digest"`
}

// Sources of an install (PullResult.Source, Environment.Source).
const (
	SourceCache    = "cache"
	SourceRegistry = "registry"
	SourceBuild    = "build"
)

// PullResult is the outcome of a pull: `pyro env pull --json`.
type PullResult struct {
	*InstalledEnvironment
	Source string `json:"source"` // "cache", "registry" or "build"
}

// EnvironmentInfo describes one environment: `pyro env inspect --json`.
type EnvironmentInfo struct {
	Name        string                `json:"name"`
	Version     string                `json:"version"`
	Description string                `json:"description"`
	Default     bool                  `json:"default"`
	Installed   bool                  `json:"installed"`
	Problem     string                `json:"problem,omitempty"` // why an installed environment does not count
	RegistryRef string                `json:"registry_ref,omitempty"`
	Manifest    *Manifest             `json:"manifest,omitempty"`
	Paths       *InstalledEnvironment `json:"paths,omitempty"`
	// Usage is what the VMs and workspaces built on it occupy.
	Usage *EnvironmentUsage `json:"usage,omitempty"`
	// Templates are its warm-start templates.
	Templates []Template `json:"templates,omitempty"`
}

// EnvironmentUsage is what the VMs and workspaces of one environment
// occupy on the host's disk, beyond the environment's own blobs.
type EnvironmentUsage struct {
	VMs        int `json:"vms"`
	Workspaces int `json:"workspaces"`
	// DiskBytes is what they wrote since their last snapshot.
	DiskBytes int64 `json:"disk_bytes"`
	// SnapshotBytes is what their snapshots, baselines, seeds and the
	// layers forks share occupy (each layer once).
	SnapshotBytes int64 `json:"snapshot_bytes"`
	// Layers counts the disk layers behind SnapshotBytes.
	Layers int `json:"layers"`
}

// ManifestSchemaVersion is the version of the Manifest JSON shape.
const ManifestSchemaVersion = 1

// Manifest describes one installed (or published) environment. It is stored
// in the cache beside the blobs and is the OCI config of a published
// environment, so a pull can verify every blob against it.
type Manifest struct {
	SchemaVersion  int       `json:"schema_version"`
	Name           string    `json:"name"`
	Version        string    `json:"version"`
	CatalogVersion string    `json:"catalog_version"`
	Description    string    `json:"description"`
	Arch           string    `json:"arch"`
	Suite          string    `json:"suite"`
	KernelVersion  string    `json:"kernel_version"`
	KernelPackage  Package   `json:"kernel_package"`
	Packages       []Package `json:"packages"`
	Blobs          Blobs     `json:"blobs"`
	Created        time.Time `json:"created"`
	Source         Source    `json:"source"`
}

// Package is one Debian package in the root filesystem.
type Package struct {
	Name    string `json:"name"`
	Version string `json:"version"`
}

// Blob is one content-addressed file.
type Blob struct {
	Digest string `json:"digest"` // of the uncompressed content: "sha256:<hex>", or "sparse-sha256:<hex>" for a rootfs (docs/reference/env.md)
	Size   int64  `json:"size"`   // apparent size in bytes (the rootfs is sparse)
}

// Blobs are the three files an environment boots from.
type Blobs struct {
	Kernel  Blob `json:"kernel"`
	Modules Blob `json:"modules"`
	Rootfs  Blob `json:"rootfs"`
}

// List returns the kernel, modules and rootfs blobs, in that order.
func (b Blobs) List() []Blob { return []Blob{b.Kernel, b.Modules, b.Rootfs} }

// Source says where an installed environment came from.
type Source struct {
	Type   string `json:"type"`             // "build" or "registry"
	Ref    string `json:"ref,omitempty"`    // registry reference it was pulled from
	Mirror string `json:"mirror,omitempty"` // Debian mirror it was built from
	Epoch  int64  `json:"source_date_epoch,omitempty"`
}

// PruneResult is what a prune removed: `pyro env prune --json`.
type PruneResult struct {
	RemovedEnvironments []string `json:"removed_environments"` // stale installs (unknown name or old recipe)
	RemovedBlobs        []string `json:"removed_blobs"`        // digests
	FreedBytes          int64    `json:"freed_bytes"`          // disk blocks freed
	LeasedBlobs         []string `json:"leased_blobs"`         // unreferenced blobs kept because a lease holds them
	RemovedTemp         int      `json:"removed_temp"`         // leftovers of interrupted pulls
	RemovedTemplates    []string `json:"removed_templates"`    // stale warm-start templates, by id
}

// PushResult is what a push published: `pyro env push --json`.
type PushResult struct {
	Environment string `json:"environment"`
	Ref         string `json:"ref"`
	Digest      string `json:"digest"` // the OCI manifest digest
	Layers      []Blob `json:"layers"` // as stored in the registry (the rootfs zstd-compressed)
}
