package firecracker

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/pyro-mcp/pyro/internal/guesttest"
)

// A small swagger 2.0 validator for the request bodies pyro sends,
// checked against Firecracker's own API description.

type apiSpec struct {
	Swagger     string                          `yaml:"swagger"`
	Paths       map[string]map[string]operation `yaml:"paths"`
	Definitions map[string]*schema              `yaml:"definitions"`
}

type operation struct {
	OperationID string               `yaml:"operationId"`
	Parameters  []parameter          `yaml:"parameters"`
	Responses   map[string]yaml.Node `yaml:"responses"`
}

type parameter struct {
	Name     string  `yaml:"name"`
	In       string  `yaml:"in"`
	Required bool    `yaml:"required"`
	Type     string  `yaml:"type"`
	Schema   *schema `yaml:"schema"`
}

type schema struct {
	Ref                  string             `yaml:"$ref"`
	Type                 string             `yaml:"type"`
	Required             []string           `yaml:"required"`
	Properties           map[string]*schema `yaml:"properties"`
	AdditionalProperties any                `yaml:"additionalProperties"`
	Enum                 []any              `yaml:"enum"`
	Minimum              *float64           `yaml:"minimum"`
	Maximum              *float64           `yaml:"maximum"`
	Items                *schema            `yaml:"items"`
	ReadOnly             bool               `yaml:"readOnly"`
	Description          string             `yaml:"description"`
}

// specPath finds shared/reference/firecracker/firecracker-api.yaml beside
// the repository root or beside one of its parents.
func specPath(t testing.TB) string {
	_, file, _, _ := runtime.Caller(0)
	dir := filepath.Dir(file)
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("repository root not found")
		}
		dir = parent
	}
	// Beside the clone (CI), or beside a directory above it (a git
	// worktree a level deeper).
	rel := filepath.Join("shared", "reference", "firecracker", "firecracker-api.yaml")
	first := filepath.Join(filepath.Dir(dir), rel)
	for d := filepath.Dir(dir); ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, rel)); err == nil {
			return filepath.Join(d, rel)
		}
		if filepath.Dir(d) == d {
			return first
		}
	}
}

var (
	specOnce sync.Once
	specVal  *apiSpec
	specErr  error
)

func loadSpec(t testing.TB) *apiSpec {
	t.Helper()
	p := specPath(t)
	specOnce.Do(func() {
		data, err := os.ReadFile(p)
		if err != nil {
			specErr = err
			return
		}
		var s apiSpec
		specErr = yaml.Unmarshal(data, &s)
		specVal = &s
	})
	if specErr != nil {
		if os.IsNotExist(specErr) {
			// CI keeps ../shared beside the clone; never copy the spec in.
			guesttest.Missing(t, fmt.Sprintf("Firecracker API description not found at %s: %v", p, specErr))
		}
		t.Fatal(specErr)
	}
	if specVal.Swagger != "2.0" || len(specVal.Paths) == 0 {
		t.Fatalf("unexpected API description: swagger %q, %d paths", specVal.Swagger, len(specVal.Paths))
	}
	return specVal
}

// route finds the path template matching path; params are its {names}.
func (s *apiSpec) route(path string) (string, map[string]string, bool) {
	got := strings.Split(path, "/")
	for tmpl := range s.Paths {
		want := strings.Split(tmpl, "/")
		if len(want) != len(got) {
			continue
		}
		params := map[string]string{}
		ok := true
		for i, w := range want {
			if strings.HasPrefix(w, "{") && strings.HasSuffix(w, "}") && got[i] != "" {
				params[w[1:len(w)-1]] = got[i]
			} else if w != got[i] {
				ok = false
				break
			}
		}
		if ok {
			return tmpl, params, true
		}
	}
	return "", nil, false
}

// ValidateRequest checks method, path and JSON body against the spec and
// returns every violation.
func (s *apiSpec) ValidateRequest(method, path string, body []byte) []error {
	tmpl, params, ok := s.route(path)
	if !ok {
		return []error{fmt.Errorf("%s: no such path in the API", path)}
	}
	op, ok := s.Paths[tmpl][strings.ToLower(method)]
	if !ok {
		return []error{fmt.Errorf("%s %s: method not allowed by the API", method, tmpl)}
	}
	var errs []error
	var bodyParam *parameter
	for i, p := range op.Parameters {
		switch p.In {
		case "path":
			v, ok := params[p.Name]
			if p.Required && (!ok || v == "") {
				errs = append(errs, fmt.Errorf("%s: missing path parameter %s", tmpl, p.Name))
			}
		case "body":
			bodyParam = &op.Parameters[i]
		}
	}
	switch {
	case bodyParam == nil && len(body) > 0:
		errs = append(errs, fmt.Errorf("%s %s takes no body", method, tmpl))
	case bodyParam != nil && len(body) == 0:
		if bodyParam.Required {
			errs = append(errs, fmt.Errorf("%s %s: body required", method, tmpl))
		}
	case bodyParam != nil:
		var v any
		if err := json.Unmarshal(body, &v); err != nil {
			return append(errs, fmt.Errorf("%s %s: body is not JSON: %v", method, tmpl, err))
		}
		errs = append(errs, s.validate(v, bodyParam.Schema, "body")...)
	}
	return errs
}

func (s *apiSpec) resolve(sc *schema) (*schema, error) {
	for sc != nil && sc.Ref != "" {
		name, ok := strings.CutPrefix(sc.Ref, "#/definitions/")
		if !ok {
			return nil, fmt.Errorf("unsupported $ref %q", sc.Ref)
		}
		if sc = s.Definitions[name]; sc == nil {
			return nil, fmt.Errorf("$ref %q: no such definition", name)
		}
	}
	return sc, nil
}

func (s *apiSpec) validate(v any, sc *schema, at string) []error {
	sc, err := s.resolve(sc)
	if err != nil {
		return []error{fmt.Errorf("%s: %v", at, err)}
	}
	if sc == nil {
		return nil
	}
	var errs []error
	bad := func(f string, a ...any) { errs = append(errs, fmt.Errorf("%s: "+f, append([]any{at}, a...)...)) }
	typ := sc.Type
	if typ == "" && sc.Properties != nil {
		typ = "object"
	}
	switch typ {
	case "object":
		obj, ok := v.(map[string]any)
		if !ok {
			bad("want an object, got %T", v)
			return errs
		}
		for _, r := range sc.Required {
			if _, ok := obj[r]; !ok {
				bad("missing required field %q", r)
			}
		}
		keys := make([]string, 0, len(obj))
		for k := range obj {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			ps, ok := sc.Properties[k]
			if !ok {
				// Firecracker's serde types deny unknown fields unless the
				// description says additionalProperties: true.
				if sc.AdditionalProperties != true {
					bad("unknown field %q", k)
				}
				continue
			}
			if rs, _ := s.resolve(ps); rs != nil && rs.ReadOnly {
				bad("field %q is read-only", k)
			}
			// A field the description marks deprecated (vsock_id,
			// mem_file_path, enable_diff_snapshots) may go in any release.
			if strings.Contains(strings.ToLower(ps.Description), "deprecated") {
				bad("field %q is deprecated", k)
			}
			errs = append(errs, s.validate(obj[k], ps, at+"."+k)...)
		}
	case "string":
		if _, ok := v.(string); !ok {
			bad("want a string, got %T", v)
		}
	case "boolean":
		if _, ok := v.(bool); !ok {
			bad("want a boolean, got %T", v)
		}
	case "integer", "number":
		n, ok := v.(float64)
		if !ok {
			bad("want a number, got %T", v)
			break
		}
		if typ == "integer" && n != float64(int64(n)) {
			bad("want an integer, got %v", n)
		}
		if sc.Minimum != nil && n < *sc.Minimum {
			bad("%v is below the minimum %v", n, *sc.Minimum)
		}
		if sc.Maximum != nil && n > *sc.Maximum {
			bad("%v is above the maximum %v", n, *sc.Maximum)
		}
	case "array":
		arr, ok := v.([]any)
		if !ok {
			bad("want an array, got %T", v)
			break
		}
		for i, e := range arr {
			errs = append(errs, s.validate(e, sc.Items, fmt.Sprintf("%s[%d]", at, i))...)
		}
	}
	if len(sc.Enum) > 0 && !slices.ContainsFunc(sc.Enum, func(e any) bool { return fmt.Sprint(e) == fmt.Sprint(v) }) {
		bad("%v is not one of %v", v, sc.Enum)
	}
	return errs
}

// checkPathIDs enforces what Firecracker checks beyond the schema: the id
// in the URL matches the one in the body, and (SnapshotLoadParams'
// description) a load names its memory exactly once, by mem_backend or by
// mem_file_path.
func checkPathIDs(s *apiSpec, path string, body []byte) error {
	tmpl, params, _ := s.route(path)
	var obj map[string]any
	_ = json.Unmarshal(body, &obj)
	if tmpl == "/snapshot/load" {
		_, backend := obj["mem_backend"]
		_, file := obj["mem_file_path"]
		if backend == file {
			return fmt.Errorf("%s: exactly one of mem_backend and mem_file_path must be present, got %s", tmpl, body)
		}
	}
	for name, val := range params {
		if got, ok := obj[name]; ok && got != val {
			return fmt.Errorf("%s: path %s=%q but body says %v", tmpl, name, val, got)
		}
	}
	return nil
}

func TestValidatorCatchesMistakes(t *testing.T) {
	s := loadSpec(t)
	for _, tc := range []struct {
		method, path, body, want string
	}{
		{"PUT", "/machine-config", `{"vcpu_count":1}`, `missing required field "mem_size_mib"`},
		{"PUT", "/machine-config", `{"vcpu_count":0,"mem_size_mib":128}`, "below the minimum"},
		{"PUT", "/machine-config", `{"vcpu_count":1.5,"mem_size_mib":128}`, "want an integer"},
		{"PUT", "/machine-config", `{"vcpu_count":1,"mem_size_mib":128,"vcpus":2}`, `unknown field "vcpus"`},
		{"PUT", "/boot-source", `{"kernel_image_path":7}`, "want a string"},
		{"PUT", "/drives/rootfs", `{"drive_id":"rootfs","is_root_device":"no"}`, "want a boolean"},
		{"PUT", "/drives/rootfs", `{"drive_id":"rootfs","is_root_device":false,"cache_type":"Fast"}`, "is not one of"},
		{"PUT", "/vsock", `{"guest_cid":2,"uds_path":"/v.sock"}`, "below the minimum 3"},
		{"PUT", "/actions", `{"action_type":"Reboot"}`, "is not one of"},
		{"POST", "/actions", `{"action_type":"InstanceStart"}`, "method not allowed"},
		{"PUT", "/nope", `{}`, "no such path"},
		{"PATCH", "/vm", `{"state":"Stopped"}`, "is not one of"},
		{"PATCH", "/vm", `{}`, `missing required field "state"`},
		{"PUT", "/vm", `{"state":"Paused"}`, "method not allowed"},
		{"PUT", "/snapshot/create", `{"snapshot_path":"/s"}`, `missing required field "mem_file_path"`},
		{"PUT", "/snapshot/create", `{"snapshot_path":"/s","mem_file_path":"/m","snapshot_type":"Incremental"}`, "is not one of"},
		{"PUT", "/snapshot/create", `{"snapshot_path":1,"mem_file_path":"/m"}`, "want a string"},
		{"PUT", "/snapshot/load", `{"mem_backend":{"backend_type":"File","backend_path":"/m"}}`, `missing required field "snapshot_path"`},
		{"PUT", "/snapshot/load", `{"snapshot_path":"/s","mem_backend":{"backend_type":"Anon","backend_path":"/m"}}`, "is not one of"},
		{"PUT", "/snapshot/load", `{"snapshot_path":"/s","mem_backend":{"backend_type":"File"}}`, `missing required field "backend_path"`},
		{"PUT", "/snapshot/load", `{"snapshot_path":"/s","mem_backend":{"backend_type":"File","backend_path":"/m"},"resume_vm":"yes"}`, "want a boolean"},
		{"PUT", "/snapshot/load", `{"snapshot_path":"/s","mem_file_path":"/m"}`, `field "mem_file_path" is deprecated`},
		{"PUT", "/snapshot/load", `{"snapshot_path":"/s","mem_backend":{"backend_type":"File","backend_path":"/m"},"enable_diff_snapshots":false}`, `field "enable_diff_snapshots" is deprecated`},
		{"PUT", "/snapshot/load", `{"snapshot_path":"/s","mem_backend":{"backend_type":"File","backend_path":"/m"},"vsock_override":{}}`, `missing required field "uds_path"`},
		{"GET", "/snapshot/load", ``, "method not allowed"},
	} {
		errs := s.ValidateRequest(tc.method, tc.path, []byte(tc.body))
		if len(errs) == 0 || !strings.Contains(fmt.Sprint(errs), tc.want) {
			t.Errorf("%s %s %s: got %v, want an error containing %q", tc.method, tc.path, tc.body, errs, tc.want)
		}
	}
	if errs := s.ValidateRequest("PATCH", "/vm", []byte(`{"state":"Paused"}`)); len(errs) != 0 {
		t.Errorf("a valid PATCH /vm body was rejected: %v", errs)
	}
	for _, body := range []string{`{"snapshot_path":"/s"}`, `{"snapshot_path":"/s","mem_file_path":"/m","mem_backend":{"backend_type":"File","backend_path":"/m"}}`} {
		if err := checkPathIDs(s, "/snapshot/load", []byte(body)); err == nil || !strings.Contains(err.Error(), "exactly one") {
			t.Errorf("load %s: got %v, want exactly one memory source", body, err)
		}
	}
}

// TestSnapshotRequestsValidateAgainstSpec checks every snapshot request
// pyro sends, plain and jailed, against the API description: paths,
// methods, required fields, types, enum values, no deprecated field, and
// the memory named once.
func TestSnapshotRequestsValidateAgainstSpec(t *testing.T) {
	s := loadSpec(t)
	for _, tc := range []struct {
		name string
		r    Request
		want string // the body, exactly
	}{
		{"pause", pauseRequest(), `{"state":"Paused"}`},
		{"resume", resumeRequest(), `{"state":"Resumed"}`},
		{"create", createRequest("/run/x/snapshot.state", "/run/x/snapshot.mem"),
			`{"snapshot_type":"Full","snapshot_path":"/run/x/snapshot.state","mem_file_path":"/run/x/snapshot.mem"}`},
		{"create jailed", createRequest("/"+jailState, "/"+jailMemory),
			`{"snapshot_type":"Full","snapshot_path":"/snapshot.state","mem_file_path":"/snapshot.mem"}`},
		{"load", loadRequest("/cache/t/state", "/cache/t/memory"),
			`{"snapshot_path":"/cache/t/state","mem_backend":{"backend_type":"File","backend_path":"/cache/t/memory"},"resume_vm":false}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body, _ := json.Marshal(tc.r.Body)
			for _, e := range s.ValidateRequest(tc.r.Method, tc.r.Path, body) {
				t.Errorf("%s %s: %v", tc.r.Method, tc.r.Path, e)
			}
			if err := checkPathIDs(s, tc.r.Path, body); err != nil {
				t.Error(err)
			}
			if string(body) != tc.want {
				t.Errorf("body\n got %s\nwant %s", body, tc.want)
			}
		})
	}
	// The enum values pyro sends are the description's own.
	for def, want := range map[string][2]string{"Vm": {"state", VMPaused + "," + VMResumed}, "SnapshotCreateParams": {"snapshot_type", SnapshotTypeFull}, "MemoryBackend": {"backend_type", MemoryBackendFile}} {
		p := s.Definitions[def].Properties[want[0]]
		for _, v := range strings.Split(want[1], ",") {
			if !slices.ContainsFunc(p.Enum, func(e any) bool { return fmt.Sprint(e) == v }) {
				t.Errorf("%s.%s: %q is not in %v", def, want[0], v, p.Enum)
			}
		}
	}
}

func TestPlanValidatesAgainstSpec(t *testing.T) {
	s := loadSpec(t)
	dir := t.TempDir()
	base := vmmSpec(dir)
	for _, tc := range []struct {
		name    string
		network bool
		cfg     planConfig
	}{
		{"plain", false, planConfig{}},
		{"network", true, planConfig{}},
		{"jailer", true, planConfig{SockDir: "/srv/jailer/firecracker/pyro-x/root", Root: func(p string) string { return "/" + filepath.Base(p) }}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := base
			spec.Network = tc.network
			plan, err := BuildPlan(spec, tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			var steps []string
			for _, r := range plan.Requests {
				body, _ := json.Marshal(r.Body)
				for _, e := range s.ValidateRequest(r.Method, r.Path, body) {
					t.Errorf("%s: %v (body %s)", r.Step, e, body)
				}
				if err := checkPathIDs(s, r.Path, body); err != nil {
					t.Error(err)
				}
				steps = append(steps, r.Method+" "+r.Path)
			}
			want := []string{"PUT /machine-config", "PUT /boot-source", "PUT /drives/rootfs", "PUT /drives/scratch"}
			if tc.network {
				want = append(want, "PUT /network-interfaces/eth0")
			}
			want = append(want, "PUT /vsock", "PUT /actions")
			if !reflect.DeepEqual(steps, want) {
				t.Errorf("steps\n got %q\nwant %q", steps, want)
			}
			// Drives and the vsock socket by fixed names relative to
			// Firecracker's directory: what a snapshot refers to.
			for _, r := range plan.Requests {
				switch b := r.Body.(type) {
				case Drive:
					if tc.cfg.Root == nil && b.PathOnHost != drivePrefix+b.DriveID {
						t.Errorf("drive %s at %q, want %q", b.DriveID, b.PathOnHost, drivePrefix+b.DriveID)
					}
				case Vsock:
					if want := map[bool]string{true: VsockSocket, false: "/" + VsockSocket}[tc.cfg.Root == nil]; b.UDSPath != want {
						t.Errorf("vsock uds_path %q, want %q", b.UDSPath, want)
					}
				}
			}
			bs := plan.Requests[1].Body.(BootSource)
			for _, arg := range []string{"console=ttyS0", "reboot=k", "panic=-1", "pci=off", "pyro_root=/dev/vda",
				"pyro_rootmode=overlay", "pyro_scratch=/dev/vdb", "pyro_channel=vsock", "pyro_vsock_port=1024", "pyro_poweroff=reboot"} {
				if !slices.Contains(strings.Fields(bs.BootArgs), arg) {
					t.Errorf("boot_args %q lacks %s", bs.BootArgs, arg)
				}
			}
			// The backend's channel must win over the engine's.
			if i, j := strings.LastIndex(bs.BootArgs, "pyro_channel=vsock"), strings.LastIndex(bs.BootArgs, "pyro_channel=virtio-serial"); i < j {
				t.Errorf("pyro_channel=vsock does not come last in %q", bs.BootArgs)
			}
			if tc.cfg.Root != nil && (!strings.HasPrefix(bs.KernelImagePath, "/") || strings.Count(bs.KernelImagePath, "/") != 1) {
				t.Errorf("jailed kernel path %q is not chroot-relative", bs.KernelImagePath)
			}
			if tc.network != (plan.Net != nil) || tc.network && !strings.Contains(bs.BootArgs, "pyro_ip="+plan.Net.GuestIP) {
				t.Errorf("network plan %+v vs boot args %q", plan.Net, bs.BootArgs)
			}
		})
	}
}
