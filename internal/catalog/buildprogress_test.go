package catalog

import (
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// What `mmdebstrap --verbose` printed for a minbase build here (abridged:
// 3 essential packages and 2 more), with pyro's hook lines.
const mmdebstrapLog = `I: automatically chosen mode: root
I: running apt-get update...
Get:1 http://mirror.invalid/debian bookworm InRelease [151 kB]
Get:2 http://mirror.invalid/debian bookworm/main amd64 Packages [8790 kB]
I: downloading packages with apt...
0 upgraded, 3 newly installed, 0 to remove and 0 not upgraded.
Need to get 2.8 MB of archives.
Get:1 http://mirror.invalid/debian bookworm/main amd64 gcc-12-base amd64 12.2.0-14+deb12u1 [37.6 kB]
Get:2 http://mirror.invalid/debian bookworm/main amd64 libc6 amd64 2.36-9+deb12u14 [2759 kB]
Get:3 http://mirror.invalid/debian bookworm/main amd64 mawk amd64 1.3.4.20200120-3.1 [119 kB]
Fetched 2.9 MB in 1s (2900 kB/s)
I: extracting archives...
I: installing essential packages...
Selecting previously unselected package gcc-12-base:amd64.
Unpacking gcc-12-base:amd64 (12.2.0-14+deb12u1) ...
Unpacking libc6:amd64 (2.36-9+deb12u14) ...
Unpacking mawk (1.3.4.20200120-3.1) ...
Setting up gcc-12-base:amd64 (12.2.0-14+deb12u1) ...
Setting up libc6:amd64 (2.36-9+deb12u14) ...
Setting up mawk (1.3.4.20200120-3.1) ...
I: installing remaining packages inside the chroot...
0 upgraded, 2 newly installed, 0 to remove and 0 not upgraded.
Get:1 http://mirror.invalid/debian bookworm/main amd64 libcom-err2 amd64 1.47.0-2+b2 [20.0 kB]
Get:2 http://mirror.invalid/debian bookworm/main amd64 procps amd64 2:4.0.2-3 [709 kB]
Unpacking libcom-err2:amd64 (1.47.0-2+b2) ...
Unpacking procps (2:4.0.2-3) ...
Setting up libcom-err2:amd64 (1.47.0-2+b2) ...
Setting up procps (2:4.0.2-3) ...
I: running --customize-hook in shell: sh -c 'sh /x/finish.sh "$1"' exec /tmp/mmdebstrap.x
pyro-progress mkfs  1000
pyro-progress mkfs 400 1000
pyro-progress mkfs 1200 1000
pyro-progress timestamps
I: success in 76.6784 seconds`

func TestBuildProgress(t *testing.T) {
	var got []string
	b := &buildProgress{report: func(step, unit string, done, total int64) {
		got = append(got, fmt.Sprintf("%s %s %d/%d", step, unit, done, total))
	}}
	for _, l := range strings.Split(mmdebstrapLog, "\n") {
		b.line(l)
	}
	want := []string{
		"update  0/0",
		"download packages 0/0", "download packages 0/3",
		"download packages 1/3", "download packages 2/3", "download packages 3/3",
		"install packages 0/3", "install packages 0/3", "install packages 1/3", "install packages 1/3",
		"install packages 2/3", "install packages 2/3", "install packages 3/3",
		"download packages 0/0", "download packages 0/2", "download packages 1/2", "download packages 2/2",
		"install packages 0/2", "install packages 1/2", "install packages 1/2", "install packages 2/2",
		"customize  0/0",
		"mkfs bytes 0/1000", "mkfs bytes 400/1000", "mkfs bytes 1000/1000",
		"timestamps  0/0",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("reports (-want +got):\n%s", diff)
	}
}
