package firecracker

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"

	"github.com/pyro-mcp/pyro/internal/errdefs"
	"github.com/pyro-mcp/pyro/internal/vmm"
)

// Saving and restoring a machine through Firecracker's snapshot API
// (firecracker-api.yaml: PATCH /vm, PUT /snapshot/create, PUT
// /snapshot/load), the backend's side of vmm.Saver and vmm.Restore, so
// that warm starts from templates and workspace suspend/resume work as
// under QEMU:
//
//	save:    PATCH /vm {state: Paused}
//	         PUT /snapshot/create {snapshot_type: Full, snapshot_path, mem_file_path}
//	restore: a fresh Firecracker process (nothing configured: load is
//	         "pre-boot only"), PUT /snapshot/load {snapshot_path,
//	         mem_backend: {backend_type: File, backend_path}, resume_vm: false},
//	         then PATCH /vm {state: Resumed}
//
// Firecracker boots on anonymous memory, so unlike QEMU a template build
// does not run on its memory file: the full snapshot writes all of RAM
// to it (SaveOptions.Memory) once, at the save. A File memory backend maps
// that file MAP_PRIVATE, so clones share every page none of them wrote,
// like QEMU's share=off. The load asks for no dirty-page tracking
// (track_dirty_pages, and enable_diff_snapshots, which the description
// marks deprecated, are left out: pyro takes full snapshots only), and no
// clock_realtime: the agent's identity step sets the clock from the host.
//
// What the snapshot refers to by path must be at the same path for the
// restoring process: the drives and the vsock socket. Every drive is
// therefore staged under a fixed name (drive-rootfs, drive-scratch, ...)
// in the machine's own directory (Firecracker's working directory, or
// the jailer's chroot) and named to Firecracker relatively, as is the
// vsock socket: a clone resolves them in its own directory. So pyro need
// not send vsock_override (which the description has for the socket), and
// works with Firecracker releases that lack it.
//
// The vsock device is reset across a snapshot (Firecracker's
// snapshot-support documentation): SnapshotCreate queues a
// VIRTIO_VSOCK_EVENT_TRANSPORT_RESET for the guest, which closes every
// vsock connection open at the save when the guest runs again, while
// listening sockets survive. So a restored machine is never reached over
// an old connection: AgentConn dials a fresh CONNECT to the agent's port,
// whose listener is still there, and the agent serves it; its shells and
// services live in the agent, not in the connection. A save that fails
// after the create and resumes the machine (Resume) costs the running
// machine its open vsock connections the same way, its supervisor's among
// them (the engine powers such a workspace off anyway).
//
// A machine with a network is not saved: the guest's address is set at
// its cold boot from its own subnet lease, which a clone, or a later
// resume, may not get back. Save refuses it and a restore with a network
// is not attempted (vmm.ErrNotRestorable): the caller boots cold.
//
// Firecracker cannot run on the host these were written on (no usable
// KVM): the requests are checked against the API description and a fake
// API server (fake_test.go); realvm_test.go exercises them where
// Firecracker runs.

// VMState is PATCH /vm's body (definition Vm).
type VMState struct {
	State string `json:"state"` // VMPaused or VMResumed
}

// Vm states.
const (
	VMPaused  = "Paused"
	VMResumed = "Resumed"
)

// SnapshotCreateParams is PUT /snapshot/create's body.
type SnapshotCreateParams struct {
	SnapshotType string `json:"snapshot_type,omitempty"` // "Full" or "Diff"
	SnapshotPath string `json:"snapshot_path"`
	MemFilePath  string `json:"mem_file_path"`
}

// SnapshotTypeFull is a snapshot with all of RAM.
const SnapshotTypeFull = "Full"

// MemoryBackend is where a loaded snapshot's RAM comes from.
type MemoryBackend struct {
	BackendType string `json:"backend_type"` // MemoryBackendFile or "Uffd"
	BackendPath string `json:"backend_path"`
}

// MemoryBackendFile maps the memory file privately.
const MemoryBackendFile = "File"

// SnapshotLoadParams is PUT /snapshot/load's body. mem_backend, not the
// deprecated mem_file_path (the description allows exactly one).
type SnapshotLoadParams struct {
	SnapshotPath string         `json:"snapshot_path"`
	MemBackend   *MemoryBackend `json:"mem_backend"`
	ResumeVM     bool           `json:"resume_vm"`
}

// Fixed names in a machine's directory (or chroot) that a snapshot refers
// to, or that a jailed Firecracker reads and writes a snapshot through.
const (
	// drivePrefix + driveID is a drive's staged name.
	drivePrefix = "drive-"
	// MachineFile records how to reach a running machine (machineRecord).
	MachineFile = "firecracker.json"
	// Inside a jail: the state and memory files of a save or a load.
	jailState  = "snapshot.state"
	jailMemory = "snapshot.mem"
)

// machineRecord is MachineFile: what Save needs to reach a machine that
// another process started.
type machineRecord struct {
	APISocket string `json:"api_socket"`
	// Jail is the jailer's chroot on the host; "" without the jailer.
	Jail    string `json:"jail,omitempty"`
	Network bool   `json:"network"`
}

// Snapshot requests, built in one place for Save, the restore and tests.

func pauseRequest() Request {
	return Request{Step: "pause", Method: http.MethodPatch, Path: "/vm", Body: VMState{State: VMPaused}}
}

func resumeRequest() Request {
	return Request{Step: "resume", Method: http.MethodPatch, Path: "/vm", Body: VMState{State: VMResumed}}
}

func createRequest(state, memory string) Request {
	return Request{Step: "snapshot create", Method: http.MethodPut, Path: "/snapshot/create",
		Body: SnapshotCreateParams{SnapshotType: SnapshotTypeFull, SnapshotPath: state, MemFilePath: memory}}
}

func loadRequest(state, memory string) Request {
	return Request{Step: "snapshot load", Method: http.MethodPut, Path: "/snapshot/load",
		Body: SnapshotLoadParams{SnapshotPath: state, MemBackend: &MemoryBackend{BackendType: MemoryBackendFile, BackendPath: memory}}}
}

var _ vmm.Saver = (*Backend)(nil)

// Save implements vmm.Saver.
func (b *Backend) Save(ctx context.Context, dir string, o vmm.SaveOptions) error {
	return Save(ctx, dir, o)
}

// Save pauses the machine whose runtime directory is dir and writes a full
// snapshot: device state to o.State, RAM to o.Memory (both created 0600,
// replaced if they exist). The machine stays paused; the caller kills it
// once Save returns, or resumes it (Resume) after a failure.
func Save(ctx context.Context, dir string, o vmm.SaveOptions) error {
	if o.State == "" || o.Memory == "" {
		return errdefs.New(errdefs.ErrInvalidArgument, "this is a bug: the caller must name both files",
			"firecracker saves a machine's state and memory to two files, got state %q and memory %q", o.State, o.Memory)
	}
	rec, err := readMachine(dir)
	if err != nil {
		return err
	}
	if rec.Network {
		return errdefs.New(errdefs.ErrFailedPrecondition, "stop it with --cold, or use the QEMU backend (--backend qemu)",
			"a firecracker machine with a network cannot be saved: its guest address belongs to this run")
	}
	state, memory := o.State, o.Memory
	if rec.Jail != "" {
		// Firecracker sees only its chroot: it writes there, pyro moves.
		state, memory = "/"+jailState, "/"+jailMemory
	}
	for _, p := range []string{o.State, o.Memory, hostPath(rec, state), hostPath(rec, memory)} {
		_ = os.Remove(p)
	}
	api := NewClient(rec.APISocket)
	defer api.Close()
	// Writing all of RAM may take longer than the client's usual 30 s
	// bound on one request: ctx alone bounds the save.
	api.hc.Timeout = 0
	for _, r := range []Request{pauseRequest(), createRequest(state, memory)} {
		if err := api.Send(ctx, r); err != nil {
			return apiFailure(ctx, err, dir, "saving the machine ("+r.Step+")")
		}
	}
	if rec.Jail != "" {
		for _, mv := range [][2]string{{hostPath(rec, state), o.State}, {hostPath(rec, memory), o.Memory}} {
			if err := moveFile(mv[0], mv[1]); err != nil {
				return errdefs.Wrap(errdefs.ErrInternal, err, "check free disk space", "moving the snapshot out of the jailer chroot")
			}
		}
	}
	for _, p := range []string{o.State, o.Memory} {
		if err := syncPrivate(p); err != nil {
			return errdefs.Wrap(errdefs.ErrInternal, err, "check free disk space", "writing the snapshot")
		}
	}
	return nil
}

// Resume continues a machine Save paused (after a failed save). Its open
// vsock connections are gone if the snapshot was created (see above).
func Resume(ctx context.Context, dir string) error {
	rec, err := readMachine(dir)
	if err != nil {
		return err
	}
	api := NewClient(rec.APISocket)
	defer api.Close()
	if err := api.Send(ctx, resumeRequest()); err != nil {
		return apiFailure(ctx, err, dir, "resuming the machine")
	}
	return nil
}

// restore loads spec's snapshot into the fresh Firecracker behind m.api
// and resumes it. root maps host paths to what Firecracker sees. Any
// failure is vmm.ErrNotRestorable: the caller may boot cold instead
// (Firecracker ends itself after a failed load).
func (m *machine) restore(ctx context.Context, spec vmm.MachineSpec, root func(string) string) error {
	memory, err := restoreMemory(spec)
	if err != nil {
		return err
	}
	fail := func(err error, what string) error {
		select {
		case <-m.done():
			err = errors.Join(err, tailErr(filepath.Join(spec.Dir, StderrFile)), tailErr(filepath.Join(spec.Dir, LogFile)))
		default:
		}
		return notRestorable(err, what, spec.Dir)
	}
	for _, r := range []Request{loadRequest(root(spec.Restore.State), root(memory)), resumeRequest()} {
		if err := m.api.Send(ctx, r); err != nil {
			if ctx.Err() != nil {
				return errdefs.Wrap(errdefs.ErrTimeout, errors.Join(vmm.ErrNotRestorable, ctx.Err()), "", "restoring the machine (%s)", r.Step)
			}
			return fail(err, r.Step)
		}
	}
	return nil
}

// restoreMemory is the RAM file a restore maps: a template's (the spec's
// private Memory), else a suspended machine's (Restore.Memory).
func restoreMemory(spec vmm.MachineSpec) (string, error) {
	switch {
	case spec.Memory != nil && spec.Memory.Shared:
		return "", errdefs.New(errdefs.ErrInvalidArgument, "this is a bug: a restored machine maps its memory privately",
			"firecracker cannot restore onto a shared memory file")
	case spec.Memory != nil:
		return spec.Memory.Path, nil
	case spec.Restore.Memory != "":
		return spec.Restore.Memory, nil
	}
	return "", notRestorable(errors.New("the saved state names no memory file"), "", spec.Dir)
}

// checkRestore refuses, before anything starts, a restore that cannot
// work: one with a network (see above), or with a file missing.
func checkRestore(spec vmm.MachineSpec) error {
	if spec.Network {
		return notRestorable(errors.New("a firecracker machine with a network is never saved"), "", spec.Dir)
	}
	memory, err := restoreMemory(spec)
	if err != nil {
		return err
	}
	for _, p := range []string{spec.Restore.State, memory} {
		if _, err := os.Stat(p); err != nil {
			return notRestorable(err, "", spec.Dir)
		}
	}
	return nil
}

func notRestorable(err error, what, dir string) error {
	if what != "" {
		err = fmt.Errorf("%s: %w", what, err)
	}
	return errdefs.Wrap(errdefs.ErrUnavailable, errors.Join(vmm.ErrNotRestorable, err),
		"pyro boots the machine afresh instead; see "+filepath.Join(dir, LogFile)+" for Firecracker's reason", "restoring the machine")
}

// apiFailure classes a failed snapshot call.
func apiFailure(ctx context.Context, err error, dir, what string) error {
	if ctx.Err() != nil {
		return errdefs.Wrap(errdefs.ErrTimeout, err, "", "%s", what)
	}
	return errdefs.Wrap(errdefs.ErrUnavailable, err, "see "+filepath.Join(dir, LogFile)+" and "+filepath.Join(dir, StderrFile), "%s", what)
}

// writeMachine records how to reach the machine started in dir.
func writeMachine(dir string, rec machineRecord) error {
	data, _ := json.Marshal(rec)
	return os.WriteFile(filepath.Join(dir, MachineFile), data, 0o600)
}

func readMachine(dir string) (machineRecord, error) {
	var rec machineRecord
	data, err := os.ReadFile(filepath.Join(dir, MachineFile))
	if err == nil {
		err = json.Unmarshal(data, &rec)
	}
	if err != nil || rec.APISocket == "" {
		return rec, errdefs.Wrap(errdefs.ErrFailedPrecondition, errors.Join(err, errors.New("no machine record")),
			"is the machine still running? 'pyro vm status' says", "no firecracker machine runs in %s", dir)
	}
	return rec, nil
}

// hostPath is where a path Firecracker sees is on the host.
func hostPath(rec machineRecord, p string) string {
	if rec.Jail == "" || !filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(rec.Jail, p)
}

// stageDrives links each drive of spec into dir under its fixed name, for
// a Firecracker whose working directory is dir (no jailer).
func stageDrives(dir string, spec vmm.MachineSpec) error {
	for i, d := range spec.Disks {
		link := filepath.Join(dir, drivePrefix+driveID(i, d))
		_ = os.Remove(link)
		abs, err := filepath.Abs(d.Path)
		if err == nil {
			err = os.Symlink(abs, link)
		}
		if err != nil {
			return errdefs.Wrap(errdefs.ErrInternal, err, "check that the runtime directory is writable", "staging drive %s", d.Path)
		}
	}
	return nil
}

// moveFile renames src to dst, copying across filesystems.
func moveFile(src, dst string) error {
	if err := os.Rename(src, dst); err == nil {
		return nil
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		os.Remove(dst)
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Remove(src)
}

// syncPrivate makes a written snapshot file private and durable.
func syncPrivate(p string) error {
	if err := os.Chmod(p, 0o600); err != nil {
		return err
	}
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// MachineDigest names the machine a cold boot of spec configures, for a
// template's key: the SHA-256 of its boot requests (paths as the spec
// gives them: the caller passes placeholders) and of whether the jailer
// runs it (a jailed snapshot names its files from the chroot's root). A
// machine with a different device, kernel argument or shape has another.
func MachineDigest(spec vmm.MachineSpec, port uint32) (string, error) {
	plan, err := BuildPlan(spec, planConfig{VsockPort: port})
	if err != nil {
		return "", err
	}
	j, err := JailerFromEnv()
	if err != nil {
		return "", err
	}
	data, err := json.Marshal(struct {
		Requests []Request
		Jailed   bool
	}{plan.Requests, j != nil})
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:]), nil
}
