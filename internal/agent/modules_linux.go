package agent

import (
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/pyro-mcp/pyro/internal/agent/modules"
)

// bootModules are the modules a boot with p needs before the agent serves,
// in load order (see internal/agent/modules).
func bootModules(p BootParams) []string {
	mods := append([]string{}, modules.Boot...)
	if p.RootMode == "overlay" {
		mods = append(mods, modules.Overlay...)
	}
	if p.Net {
		mods = append(mods, modules.Net...)
	}
	if p.Channel == "vsock" {
		mods = append(mods, modules.Vsock...)
	}
	return mods
}

// findModules maps module names to their files under
// /lib/modules/$(uname -r) in the initramfs.
func findModules() map[string]string {
	var u unix.Utsname
	unix.Uname(&u)
	dir := filepath.Join("/lib/modules", unix.ByteSliceToString(u.Release[:]))
	found := map[string]string{}
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			name := d.Name()
			for _, ext := range []string{".ko", ".ko.xz", ".ko.zst", ".ko.gz"} {
				if strings.HasSuffix(name, ext) {
					found[strings.ReplaceAll(strings.TrimSuffix(name, ext), "-", "_")] = p
				}
			}
		}
		return nil
	})
	return found
}

// loadModules loads names, in order, skipping any the initramfs lacks (built
// into the kernel, or not shipped).
func loadModules(log *slog.Logger, found map[string]string, names []string) {
	loadOpened(log, openModules(found, names))
}

// openModules opens the files of names that exist, in order. Opened files
// stay loadable after the switch to the real root hides the initramfs.
func openModules(found map[string]string, names []string) []*os.File {
	var files []*os.File
	for _, m := range names {
		if p, ok := found[m]; ok {
			if f, err := os.Open(p); err == nil {
				files = append(files, f)
			}
		}
	}
	return files
}

// modParams are the command line's module.param=value arguments, by module.
var modParams map[string]string

// moduleName is a module file's name as the kernel knows it.
func moduleName(path string) string {
	name := filepath.Base(path)
	for _, ext := range []string{".ko", ".ko.xz", ".ko.zst", ".ko.gz"} {
		name = strings.TrimSuffix(name, ext)
	}
	return strings.ReplaceAll(name, "-", "_")
}

func loadOpened(log *slog.Logger, files []*os.File) {
	for _, f := range files {
		flags := 0
		if !strings.HasSuffix(f.Name(), ".ko") {
			flags = unix.MODULE_INIT_COMPRESSED_FILE
		}
		if err := unix.FinitModule(int(f.Fd()), modParams[moduleName(f.Name())], flags); err != nil && !errors.Is(err, unix.EEXIST) {
			log.Warn("loading module", "module", filepath.Base(f.Name()), "err", err)
		}
		f.Close()
	}
}
