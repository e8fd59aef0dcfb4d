package catalog

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pyro-mcp/pyro/internal/agent/modules"
	"github.com/pyro-mcp/pyro/internal/aptsource"
	"github.com/pyro-mcp/pyro/internal/cpio"
	"github.com/pyro-mcp/pyro/internal/errdefs"
)

// DefaultSourceDateEpoch pins every timestamp a build writes (mmdebstrap,
// mkfs.ext4, the modules cpio) so that two builds of the same packages give
// the same bytes. $SOURCE_DATE_EPOCH overrides it.
const DefaultSourceDateEpoch = 1735689600 // 2025-01-01T00:00:00Z

// RootfsSize is the apparent size of every root filesystem image. The file
// is sparse (a few hundred MB used on disk); the guest's writable overlay
// lives inside it, so the free space in it is the room a workspace has.
const RootfsSize = 4 << 30

// GuestModules are the kernel modules an environment ships, in load order;
// the list itself is the agent's (internal/agent/modules), which loads them.
var GuestModules = modules.All()

// mirror is the Debian mirror builds use: $PYRO_DEBIAN_MIRROR, else the
// one the host's apt is configured with, else "" (mmdebstrap's own
// default). It is resolved at run time, never written into pyro.
func mirror() string { return aptsource.Mirror("", Suite) }

// mirrorArgs are mmdebstrap's trailing mirror arguments: none when no
// mirror is known, so that mmdebstrap picks its default.
func mirrorArgs() []string {
	if m := mirror(); m != "" {
		return []string{m}
	}
	return nil
}

// mirrorName describes the mirror for messages.
func mirrorName() string {
	if m := mirror(); m != "" {
		return m
	}
	return "(mmdebstrap's default)"
}

func sourceDateEpoch() int64 {
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			return n
		}
	}
	return DefaultSourceDateEpoch
}

// built is the output of a local build, before it enters the cache.
type built struct {
	kernel, modules, rootfs string // files in the build directory
	kernelVersion           string
	kernelPackage           Package
	packages                []Package
}

func findTool(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	// mkfs.ext4 lives in /sbin, which a user's PATH often lacks.
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", errdefs.New(errdefs.ErrFailedPrecondition,
		"install it (Debian: apt-get install mmdebstrap e2fsprogs dpkg) or set PYRO_ENV_REGISTRY to pull prebuilt environments",
		"building environments needs %s, which is not installed", name)
}

// build makes the three blobs of entry in dir (a fresh private directory).
func (s *Store) build(ctx context.Context, entry Entry, dir string) (*built, error) {
	if runtime.GOARCH != "amd64" {
		return nil, errdefs.New(errdefs.ErrFailedPrecondition, "pull a prebuilt environment from a registry instead",
			"local builds support amd64 only, not %s", runtime.GOARCH)
	}
	for _, t := range []string{"mmdebstrap", "mkfs.ext4", "dpkg-query"} {
		if _, err := findTool(t); err != nil {
			return nil, err
		}
	}
	b := &built{}
	s.progress(ctx, Progress{Phase: "build", Environment: entry.Name, Step: "kernel"})
	if err := s.buildKernel(ctx, entry, dir, b); err != nil {
		return nil, err
	}
	s.progress(ctx, Progress{Phase: "build", Environment: entry.Name, Step: "mmdebstrap"})
	if err := s.buildRootfs(ctx, entry, dir, b); err != nil {
		return nil, err
	}
	return b, nil
}

// runLogged runs a build tool, sending its output to the debug log (and
// each line to onLine, if set) and keeping the tail for the error message.
func (s *Store) runLogged(ctx context.Context, env []string, onLine func(string), name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	// On cancel, SIGTERM the whole process group: mmdebstrap then unmounts
	// /proc, /sys and /dev from its chroot and removes it. SIGKILL (the
	// default) would leave those mounts behind in the cache.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = 60 * time.Second
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	var tail []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			s.log.Debug("build", "tool", filepath.Base(name), "line", line)
			if onLine != nil {
				onLine(line)
			}
			tail = append(tail, line)
			if len(tail) > 15 {
				tail = tail[1:]
			}
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	err := cmd.Run()
	pw.Close()
	<-done
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		hint := "run with --log-level=debug to see the whole build log"
		out := strings.Join(tail, "\n")
		if strings.Contains(out, "unshare") || strings.Contains(out, "subuid") {
			hint = "build as root, or allow unprivileged user namespaces and give your user a /etc/subuid range; or set PYRO_ENV_REGISTRY to pull prebuilt environments"
		} else if strings.Contains(out, "Could not resolve") || strings.Contains(out, "Failed to fetch") || strings.Contains(out, "Temporary failure") {
			hint = "check network access to the Debian mirror " + mirrorName() + " (pyro uses the host's apt sources; override with PYRO_DEBIAN_MIRROR)"
		}
		return errdefs.Wrap(errdefs.ErrFailedPrecondition, err, hint, "%s failed:\n%s\n", filepath.Base(name), out)
	}
	return nil
}

func (s *Store) buildKernel(ctx context.Context, entry Entry, dir string, b *built) error {
	tree := filepath.Join(dir, "kernel-tree")
	env := []string{fmt.Sprintf("SOURCE_DATE_EPOCH=%d", sourceDateEpoch())}
	// The extract variant unpacks just the named package: no dependencies,
	// no maintainer scripts (so no initramfs-tools run).
	args := append([]string{"--mode=auto", "--variant=extract", "--include=" + KernelPackage, Suite, tree}, mirrorArgs()...)
	if err := s.runLogged(ctx, env, nil, "mmdebstrap", args...); err != nil {
		return fmt.Errorf("extracting %s: %w", KernelPackage, err)
	}
	kernels, _ := filepath.Glob(filepath.Join(tree, "boot", "vmlinuz-*"))
	if len(kernels) != 1 {
		return errdefs.New(errdefs.ErrInternal, "", "expected one kernel in %s, found %d", KernelPackage, len(kernels))
	}
	b.kernelVersion = strings.TrimPrefix(filepath.Base(kernels[0]), "vmlinuz-")
	b.kernel = filepath.Join(dir, "vmlinuz")
	if err := copyFile(kernels[0], b.kernel); err != nil {
		return err
	}
	// The extract variant records no dpkg status: take the version from the
	// first line of the kernel's changelog, "SOURCE (VERSION) suite; ...".
	b.kernelPackage = kernelSourceVersion(filepath.Join(tree, "usr/share/doc/linux-image-"+b.kernelVersion))
	b.modules = filepath.Join(dir, "modules.cpio")
	if err := writeModulesCpio(filepath.Join(tree, "lib", "modules", b.kernelVersion), b.kernelVersion, b.modules); err != nil {
		return fmt.Errorf("packing kernel modules: %w", err)
	}
	return os.RemoveAll(tree)
}

// writeModulesCpio packs GuestModules (those that exist) with a
// modules.dep. Modules are stored uncompressed: the
// guest loads them with finit_module without a decompressor.
func writeModulesCpio(modDir, kver, out string) error {
	byName := map[string]string{} // module name -> path relative to modDir
	err := filepath.WalkDir(filepath.Join(modDir, "kernel"), func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		base := filepath.Base(p)
		for _, ext := range []string{".ko", ".ko.xz", ".ko.zst", ".ko.gz"} {
			if strings.HasSuffix(base, ext) {
				rel, _ := filepath.Rel(modDir, p)
				byName[strings.ReplaceAll(strings.TrimSuffix(base, ext), "-", "_")] = rel
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	type mod struct {
		name, rel string
		data      []byte
		deps      []string
	}
	var mods []mod
	for _, name := range GuestModules {
		rel, ok := byName[name]
		if !ok {
			continue // built in, or absent from this kernel
		}
		data, err := readModule(filepath.Join(modDir, rel))
		if err != nil {
			return err
		}
		rel = strings.TrimSuffix(rel, filepath.Ext(rel))
		if !strings.HasSuffix(rel, ".ko") {
			rel += ".ko"
		}
		deps, err := moduleDepends(data)
		if err != nil {
			return fmt.Errorf("%s: %w", rel, err)
		}
		mods = append(mods, mod{name: name, rel: filepath.ToSlash(rel), data: data, deps: deps})
	}
	if len(mods) == 0 {
		return fmt.Errorf("none of the guest modules found under %s", modDir)
	}
	relOf := map[string]string{}
	for _, m := range mods {
		relOf[m.name] = m.rel
	}
	var dep bytes.Buffer
	for _, m := range mods {
		var ds []string
		for _, d := range m.deps {
			if r, ok := relOf[d]; ok {
				ds = append(ds, r)
			}
		}
		fmt.Fprintf(&dep, "%s:", m.rel)
		for _, d := range ds {
			fmt.Fprintf(&dep, " %s", d)
		}
		dep.WriteString("\n")
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	defer f.Close()
	bw := bufio.NewWriter(f)
	cw := cpio.NewWriter(bw, sourceDateEpoch())
	prefix := "lib/modules/" + kver + "/"
	for _, m := range mods {
		cw.File(prefix+m.rel, 0o644, m.data)
	}
	cw.File(prefix+"modules.dep", 0o644, dep.Bytes())
	if err := cw.Close(); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	return f.Close()
}

// readModule returns a module's ELF bytes. Bookworm ships them
// uncompressed; a compressed one would need a decompressor pyro lacks, so
// say so rather than ship something the guest cannot load.
func readModule(path string) ([]byte, error) {
	if !strings.HasSuffix(path, ".ko") {
		return nil, fmt.Errorf("compressed kernel module %s is not supported", path)
	}
	return os.ReadFile(path)
}

// moduleDepends reads "depends=" from a module's .modinfo section.
func moduleDepends(data []byte) ([]string, error) {
	ef, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	sec := ef.Section(".modinfo")
	if sec == nil {
		return nil, nil
	}
	info, err := sec.Data()
	if err != nil {
		return nil, err
	}
	for _, kv := range bytes.Split(info, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, []byte("depends=")); ok && len(v) > 0 {
			return strings.Split(string(v), ","), nil
		}
	}
	return nil, nil
}

// finishScript runs as mmdebstrap's customize hook, with the chroot as $1:
// host-specific files are replaced, caches dropped, the package list taken
// and the ext4 image made inside mmdebstrap's namespace, so ownership is
// right in both root and unshare mode.
const finishScript = `set -eu
root="$1"
rm -f "$root/etc/resolv.conf"
printf 'nameserver 10.0.2.3\n' > "$root/etc/resolv.conf"
printf 'pyro\n' > "$root/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tpyro\n::1\tlocalhost ip6-localhost ip6-loopback\n' > "$root/etc/hosts"
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
  "$root"/var/cache/debconf/*-old "$root"/var/lib/dpkg/*-old "$root"/var/cache/ldconfig/aux-cache \
  "$root"/var/log/dpkg.log "$root"/var/log/apt/* "$root"/var/log/alternatives.log "$root"/var/log/bootstrap.log
mkdir -p "$root/workspace"
: > "$root/etc/machine-id"
dpkg-query --admindir="$root/var/lib/dpkg" -W -f='${Package}\t${Version}\n' > "$PYRO_PKGS"
# mmdebstrap keeps /proc, /sys and /dev mounted in the chroot while hooks
# run: unmount them in a private mount namespace so mkfs copies only the tree.
unshare --mount --propagation private sh -c '
set -eu
root="$1"
findmnt -rn -o TARGET | grep "^$root/" | sort -r | while read -r m; do umount -l "$m"; done
# mmdebstrap'"'"'s own temp files stay out of the image (they have random names).
mount -t tmpfs -o mode=1777 tmpfs "$root/tmp"
# Reproducible images: no file in the tree is newer than SOURCE_DATE_EPOCH
# (mkfs.ext4 -d copies each file'"'"'s times into the image).
find "$root" -newermt "@$SOURCE_DATE_EPOCH" -print0 | xargs -0r touch --no-dereference --date="@$SOURCE_DATE_EPOCH"
# mkfs runs in the background so that its progress (bytes it has read of
# the tree) can be told to pyro, which reads "pyro-progress" lines.
total=$(du -sxb "$root" | cut -f1)
E2FSPROGS_FAKE_TIME="$SOURCE_DATE_EPOCH" "$PYRO_MKFS" -q -F -t ext4 -L root -U "$PYRO_UUID" \
  -E "hash_seed=$PYRO_UUID,root_owner=0:0,lazy_itable_init=0" -d "$root" "$PYRO_OUT" &
pid=$!
while kill -0 "$pid" 2>/dev/null; do
  echo "pyro-progress mkfs $(awk "/^rchar/ {print \$2}" "/proc/$pid/io" 2>/dev/null) $total"
  sleep 0.5
done
wait "$pid"
' sh "$root"
echo "pyro-progress timestamps"
# mkfs.ext4 copies each file's ctime, which nothing can set in the tree, and
# its atime, which mkfs's own reading moves: set both on every in-use inode
# of the image (in-use inodes come from the per-group free-inode ranges
# dumpe2fs prints).
ipg=$(dumpe2fs -h "$PYRO_OUT" 2>/dev/null | awk -F: '/^Inodes per group/ {print $2 + 0}')
dumpe2fs "$PYRO_OUT" 2>/dev/null | awk -v ipg="$ipg" -v t="$SOURCE_DATE_EPOCH" '
/^Group [0-9]+:/ { g = $2 + 0 }
/^  Free inodes:/ {
	sub(/^  Free inodes: */, "")
	n = split($0, r, ", *")
	split("", free)
	for (k = 1; k <= n; k++) {
		if (r[k] == "") continue
		m = split(r[k], ab, "-")
		b = (m > 1) ? ab[2] : ab[1]
		for (x = ab[1] + 0; x <= b + 0; x++) free[x] = 1
	}
	for (x = g * ipg + 1; x <= (g + 1) * ipg; x++) if (!(x in free)) {
		print "sif <" x "> ctime @" t
		print "sif <" x "> atime @" t
	}
}' > "$PYRO_OUT.debugfs"
E2FSPROGS_FAKE_TIME="$SOURCE_DATE_EPOCH" debugfs -w -f "$PYRO_OUT.debugfs" "$PYRO_OUT" >/dev/null 2>&1
rm -f "$PYRO_OUT.debugfs"
`

func (s *Store) buildRootfs(ctx context.Context, entry Entry, dir string, b *built) error {
	mkfs, err := findTool("mkfs.ext4")
	if err != nil {
		return err
	}
	script := filepath.Join(dir, "finish.sh")
	if err := os.WriteFile(script, []byte(finishScript), 0o755); err != nil {
		return err
	}
	b.rootfs = filepath.Join(dir, "rootfs.ext4")
	pkgs := filepath.Join(dir, "packages.tsv")
	// Created here, writable by all, so the hook can fill them even from
	// inside an unprivileged user namespace (unshare mode).
	for _, p := range []string{b.rootfs, pkgs} {
		f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o666)
		if err != nil {
			return err
		}
		f.Close()
		_ = os.Chmod(p, 0o666)
	}
	if err := os.Truncate(b.rootfs, RootfsSize); err != nil {
		return err
	}
	_ = os.Chmod(dir, 0o777)
	env := []string{
		fmt.Sprintf("SOURCE_DATE_EPOCH=%d", sourceDateEpoch()),
		"PYRO_OUT=" + b.rootfs, "PYRO_PKGS=" + pkgs, "PYRO_MKFS=" + mkfs,
		"PYRO_UUID=" + fsUUID(entry.Name),
		"TMPDIR=" + dir,
	}
	// --verbose: apt's and dpkg's own lines, which buildProgress counts
	// (mmdebstrap draws its progress bar only on a terminal).
	args := []string{"--mode=auto", "--verbose", "--variant=" + entry.Variant, "--format=null",
		"--aptopt=Acquire::Retries \"3\"",
		"--dpkgopt=path-exclude=/usr/share/man/*",
		"--dpkgopt=path-exclude=/usr/share/doc/*",
		"--dpkgopt=path-include=/usr/share/doc/*/copyright",
		"--dpkgopt=path-exclude=/usr/share/info/*",
		"--customize-hook=sh " + script + ` "$1"`,
	}
	if len(entry.Packages) > 0 {
		args = append(args, "--include="+strings.Join(entry.Packages, ","))
	}
	args = append(args, Suite, "/dev/null")
	args = append(args, mirrorArgs()...)
	bp := &buildProgress{report: func(step, unit string, done, total int64) {
		s.progress(ctx, Progress{Phase: "build", Environment: entry.Name, Step: step, Unit: unit, Done: done, Total: total})
	}}
	if err := s.runLogged(ctx, env, bp.line, "mmdebstrap", args...); err != nil {
		return fmt.Errorf("building the root filesystem of %s: %w", entry.Name, err)
	}
	data, err := os.ReadFile(pkgs)
	if err != nil {
		return err
	}
	b.packages = parsePackages(string(data))
	if len(b.packages) == 0 {
		return errors.New("building the root filesystem: no packages recorded")
	}
	return nil
}

func parsePackages(s string) []Package {
	var out []Package
	for _, line := range strings.Split(s, "\n") {
		name, ver, ok := strings.Cut(strings.TrimSpace(line), "\t")
		if ok && name != "" {
			out = append(out, Package{Name: name, Version: ver})
		}
	}
	slices.SortFunc(out, func(a, b Package) int { return strings.Compare(a.Name, b.Name) })
	return out
}

func kernelSourceVersion(docDir string) Package {
	for _, name := range []string{"changelog.Debian.gz", "changelog.gz"} {
		f, err := os.Open(filepath.Join(docDir, name))
		if err != nil {
			continue
		}
		defer f.Close()
		zr, err := gzip.NewReader(f)
		if err != nil {
			continue
		}
		line, _ := bufio.NewReader(zr).ReadString('\n')
		src, rest, ok := strings.Cut(line, " (")
		ver, _, ok2 := strings.Cut(rest, ")")
		if ok && ok2 {
			return Package{Name: src, Version: ver}
		}
	}
	return Package{Name: KernelPackage, Version: "unknown"}
}

// fsUUID is a fixed UUID per environment name, so builds are reproducible.
func fsUUID(name string) string {
	h := sha256.Sum256([]byte("pyro-rootfs:" + name))
	h[6] = h[6]&0x0f | 0x40
	h[8] = h[8]&0x3f | 0x80
	x := hex.EncodeToString(h[:16])
	return x[0:8] + "-" + x[8:12] + "-" + x[12:16] + "-" + x[16:20] + "-" + x[20:32]
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
