package catalog

import (
	"strconv"
	"strings"

	"github.com/pyro-mcp/pyro/api"
	"github.com/pyro-mcp/pyro/internal/lazyregexp"
)

// Steps of a local build's root filesystem, as progress reports them.
const (
	stepUpdate     = "update"     // apt-get update
	stepDownload   = "download"   // packages fetched of those to install
	stepInstall    = "install"    // packages unpacked and set up (apt interleaves the two)
	stepCustomize  = "customize"  // pyro's hook: clean the tree, list packages
	stepMkfs       = "mkfs"       // bytes of the tree copied into the image
	stepTimestamps = "timestamps" // the image's times pinned for reproducibility
)

// buildProgress reads what `mmdebstrap --verbose` prints (its own "I:"
// lines, apt's and dpkg's, and the "pyro-progress" lines of pyro's hook)
// and reports the packages downloaded, then installed (half a package
// when dpkg has unpacked it, a whole one once it is set up), out of the
// total apt announced; then the bytes mkfs copied. mmdebstrap installs in
// two rounds (the essential packages, then the rest inside the chroot);
// each round counts from zero. A line it does not recognise (another apt
// version, another language) only means less detail, never a failure.
type buildProgress struct {
	report func(step, unit string, done, total int64)

	fetching             bool // between "downloading packages" and the end of the round's downloads
	total                int64
	got, unpacked, setUp int64
	mkfs                 int64
}

var newlyInstalled = lazyregexp.New(`^\d+ upgraded, (\d+) newly installed`)

func (b *buildProgress) line(l string) {
	switch {
	case strings.HasPrefix(l, "I: running apt-get update"):
		b.report(stepUpdate, "", 0, 0)
	case strings.HasPrefix(l, "I: downloading packages"), strings.HasPrefix(l, "I: installing remaining packages"):
		b.fetching, b.total, b.got, b.unpacked, b.setUp = true, 0, 0, 0, 0
		b.report(stepDownload, api.UnitPackages, 0, 0)
	case strings.HasPrefix(l, "I: installing essential packages"):
		b.fetching = false
		b.report(stepInstall, api.UnitPackages, 0, b.total)
	case strings.HasPrefix(l, "I: running --customize-hook"):
		b.fetching = false
		b.report(stepCustomize, "", 0, 0)
	case strings.HasPrefix(l, "pyro-progress mkfs "):
		// "pyro-progress mkfs DONE TOTAL"; DONE is empty when mkfs has
		// not started yet or just ended.
		f := strings.Fields(l)
		total, _ := strconv.ParseInt(f[len(f)-1], 10, 64)
		var done int64
		if len(f) == 4 {
			done, _ = strconv.ParseInt(f[2], 10, 64)
		}
		if total > 0 && done >= b.mkfs {
			b.mkfs = min(done, total)
			b.report(stepMkfs, api.UnitBytes, b.mkfs, total)
		}
	case l == "pyro-progress timestamps":
		b.report(stepTimestamps, "", 0, 0)
	case b.fetching && newlyInstalled.MatchString(l):
		b.total, _ = strconv.ParseInt(newlyInstalled.FindStringSubmatch(l)[1], 10, 64)
		b.report(stepDownload, api.UnitPackages, 0, b.total)
	case b.fetching && strings.HasPrefix(l, "Get:"):
		b.got++
		b.report(stepDownload, api.UnitPackages, min(b.got, b.total), b.total)
	case strings.HasPrefix(l, "Unpacking "), strings.HasPrefix(l, "Setting up "):
		b.fetching = false
		if l[0] == 'U' {
			b.unpacked++
		} else {
			b.setUp++
		}
		n := max(b.unpacked, b.setUp)
		b.report(stepInstall, api.UnitPackages, (b.unpacked+b.setUp)/2, max(b.total, n))
	}
}
