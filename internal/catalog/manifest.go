package catalog

import "github.com/pyro-mcp/pyro/api"

// The catalog's records are the public types of package api, so that the
// JSON of `pyro env ...` is theirs.
type (
	// Installed is what the engine needs to boot an installed environment.
	Installed = api.InstalledEnvironment
	// EnvStatus is one catalog entry and whether it is installed.
	EnvStatus = api.Environment
	// Manifest describes one installed (or published) environment.
	Manifest = api.Manifest
	Package  = api.Package
	Blob     = api.Blob
	Blobs    = api.Blobs
	Source   = api.Source
	// Progress is one report of a pull or push.
	Progress = api.Progress
)

// ManifestSchemaVersion is the version of the Manifest JSON shape.
const ManifestSchemaVersion = api.ManifestSchemaVersion

// blobNames name the blobs of Blobs.List, in its order.
var blobNames = []string{"kernel", "modules", "rootfs"}
