package catalog

import "time"

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
	Digest string `json:"digest"` // "sha256:<hex>" of the uncompressed content
	Size   int64  `json:"size"`   // apparent size in bytes (the rootfs is sparse)
}

// Blobs are the three files an environment boots from.
type Blobs struct {
	Kernel  Blob `json:"kernel"`
	Modules Blob `json:"modules"`
	Rootfs  Blob `json:"rootfs"`
}

func (b Blobs) list() []Blob { return []Blob{b.Kernel, b.Modules, b.Rootfs} }

// Source says where an installed environment came from.
type Source struct {
	Type   string `json:"type"`             // "build" or "registry"
	Ref    string `json:"ref,omitempty"`    // registry reference it was pulled from
	Mirror string `json:"mirror,omitempty"` // Debian mirror it was built from
	Epoch  int64  `json:"source_date_epoch,omitempty"`
}
