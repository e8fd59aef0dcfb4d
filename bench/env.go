package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/pyro-mcp/pyro/internal/catalog"
	"github.com/pyro-mcp/pyro/internal/registrytest"
)

// largestFile is the biggest regular file under dir (a registry's rootfs
// layer).
func largestFile(dir string) (string, error) {
	var best string
	var size int64
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() && fi.Size() > size {
			best, size = p, fi.Size()
		}
		return nil
	})
	if best == "" && err == nil {
		err = fmt.Errorf("no files under %s", dir)
	}
	return best, err
}

// envSuite: `env list` latency, pull time from a local registry against its
// lower bound (copying the same bytes and decompressing the rootfs with the
// stock tool), and (with -build) local build time per environment.
func (b *benchEnv) envSuite(ctx context.Context) error {
	r := b.report
	r.line("\n## Environments\n\n")
	if _, err := b.pyroCmd(ctx, nil, "env", "pull", "debian:12"); err != nil {
		return err
	}
	ds, err := timeIt(20, func() error {
		_, err := b.pyroCmd(ctx, nil, "env", "list")
		return err
	})
	if err != nil {
		return err
	}
	r.line("- `pyro env list` (whole process, 20 runs): p50 %s, p95 %s\n", ms(pct(ds, .5)), ms(pct(ds, .95)))

	reg, err := registrytest.Start(ctx, filepath.Join(b.work, "registry"))
	if err != nil {
		return err
	}
	defer reg.Stop()
	ref := reg.Addr + "/bench"
	if _, err := b.pyroCmd(ctx, nil, "env", "push", "debian:12", ref); err != nil {
		return err
	}
	blobs := dirSize(reg.Dir)
	cache := filepath.Join(b.work, "pullcache")
	t := time.Now()
	if _, err := b.pyroCmd(ctx, []string{"PYRO_CACHE_DIR=" + cache, "PYRO_ENV_REGISTRY=" + ref}, "env", "pull", "debian:12"); err != nil {
		return err
	}
	pull := time.Since(t)
	s, err := catalog.Open(catalog.Options{Dir: cache, Registry: "none"})
	if err != nil {
		return err
	}
	inst, err := s.Resolve(ctx, "debian:12")
	if err != nil {
		return err
	}
	// The floor a pull is held to: the same bytes copied as plain files,
	// the rootfs layer decompressed to a sparse file by the stock tool, and
	// both written out to disk.
	rootfsLayer, err := largestFile(reg.Dir)
	if err != nil {
		return err
	}
	t = time.Now()
	if out, err := exec.CommandContext(ctx, "cp", "-r", reg.Dir, filepath.Join(b.work, "copy")).CombinedOutput(); err != nil {
		return fmt.Errorf("cp: %v: %s", err, out)
	}
	cp := time.Since(t)
	if out, err := exec.CommandContext(ctx, "zstd", "-q", "-d", "--sparse", "-f", rootfsLayer, "-o", filepath.Join(b.work, "rootfs.img")).CombinedOutput(); err != nil {
		return fmt.Errorf("zstd: %v: %s", err, out)
	}
	exec.Command("sync").Run()
	bound := time.Since(t)
	fi, _ := os.Stat(inst.RootfsPath)
	r.line("- pull of debian:12 from a local docker-registry: %d MB transferred (rootfs %d MB installed, sparse) in **%.2f s** = %.0f MB/s\n",
		blobs/1e6, fi.Size()/1e6, pull.Seconds(), mbps(blobs, pull))
	r.line("- its lower bound: `cp -r` of the same registry blobs (%.2f s), then `zstd -d --sparse` of the rootfs layer, then `sync`: %.2f s; **pull/bound = %.2f** (target ≤ 2)\n",
		cp.Seconds(), bound.Seconds(), pull.Seconds()/bound.Seconds())

	if !b.build {
		r.line("- local builds: not run (pass -build)\n")
		return nil
	}
	for _, name := range catalog.Names() {
		cache := filepath.Join(b.work, "build-"+name)
		t := time.Now()
		if _, err := b.pyroCmd(ctx, []string{"PYRO_CACHE_DIR=" + cache}, "env", "pull", name, "--registry=none"); err != nil {
			return err
		}
		r.line("- local build of %s from Debian's archive (kernel included): %.1f s\n", name, time.Since(t).Seconds())
		os.RemoveAll(cache)
	}
	return nil
}
