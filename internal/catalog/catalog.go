// Package catalog owns pyro's environments: the curated catalog of Debian
// images, building them locally (mmdebstrap + mkfs.ext4), publishing and
// pulling them as OCI artifacts, and the content-addressed cache the engine
// boots from (with leases so that prune never frees a blob a VM uses).
//
//	s, err := catalog.Open(catalog.Options{})
//	inst, err := s.Pull(ctx, "debian:12") // cache, then registry, then local build
//	// inst.KernelPath, inst.ModulesPath, inst.RootfsPath are ready to boot
package catalog

import (
	"slices"
	"strings"

	"github.com/pyro-mcp/pyro/internal/errdefs"
)

// CatalogVersion names this revision of the catalog as a whole. It changes
// whenever any entry's recipe does.
const CatalogVersion = "2.4.0"

// Suite is the Debian release every environment is built from.
const Suite = "bookworm"

// KernelPackage is the Debian package whose bzImage and modules every
// environment boots with. Built once per build and shared through content
// addressing.
const KernelPackage = "linux-image-cloud-amd64"

// Entry is one environment in the catalog.
type Entry struct {
	Name        string   `json:"name"`
	Version     string   `json:"version"` // recipe version; bump when Packages or the build change
	Description string   `json:"description"`
	Variant     string   `json:"-"` // mmdebstrap --variant
	Packages    []string `json:"-"` // mmdebstrap --include, on top of the variant
	Default     bool     `json:"default,omitempty"`
}

var basePackages = []string{"procps", "iproute2", "less"}

var defaultPackages = append(slices.Clone(basePackages),
	"git", "ca-certificates", "curl", "xz-utils", "unzip", "openssh-client")

var buildPackages = append(slices.Clone(defaultPackages),
	"build-essential", "make", "pkg-config", "python3", "python3-venv", "python3-dev", "python3-pip",
	"autoconf", "automake", "libtool", "cmake", "libssl-dev", "zlib1g-dev")

// entries is the catalog. Names are stable public identifiers.
var entries = []Entry{
	{
		Name:        "debian:12",
		Version:     "2.4.0-1",
		Description: "Debian 12 (bookworm) with git, ca-certificates, curl, xz-utils, unzip",
		Variant:     "minbase",
		Packages:    defaultPackages,
		Default:     true,
	},
	{
		Name:        "debian:12-base",
		Version:     "2.4.0-1",
		Description: "Debian 12 (bookworm) minimal: minbase plus procps, iproute2, less",
		Variant:     "minbase",
		Packages:    basePackages,
	},
	{
		Name:        "debian:12-build",
		Version:     "2.4.0-1",
		Description: "Debian 12 (bookworm) for building software: debian:12 plus build-essential, python3 (venv, dev, pip), autotools, cmake, pkg-config, libssl-dev, zlib1g-dev",
		Variant:     "minbase",
		Packages:    buildPackages,
	},
}

// Names returns the catalog's environment names, in catalog order.
func Names() []string {
	names := make([]string, len(entries))
	for i, e := range entries {
		names[i] = e.Name
	}
	return names
}

// Entries returns a copy of the catalog.
func Entries() []Entry {
	out := make([]Entry, len(entries))
	for i, e := range entries {
		out[i] = e
		out[i].Packages = slices.Clone(e.Packages)
	}
	return out
}

// Lookup returns the catalog entry for name. An unknown name is an
// errdefs.ErrNotFound error that lists the valid names.
func Lookup(name string) (Entry, error) {
	for _, e := range entries {
		if e.Name == name {
			e.Packages = slices.Clone(e.Packages)
			return e, nil
		}
	}
	valid := strings.Join(Names(), ", ")
	return Entry{}, errdefs.New(errdefs.ErrNotFound,
		"valid environments: "+valid+" (see 'pyro env list')",
		"unknown environment %q", name)
}
