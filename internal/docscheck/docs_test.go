package docscheck

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/pyro-mcp/pyro"
	"github.com/pyro-mcp/pyro/internal/cli"
	"github.com/pyro-mcp/pyro/internal/engine"
	"github.com/pyro-mcp/pyro/internal/mcpserver"
)

// repoRoot is where README.md and docs/ live, relative to this package.
const repoRoot = "../.."

const contractDoc = "docs/public-contract.md"

// The 2.4 public contract (docs/public-contract.md says it in prose; this is
// the same list as data). Adding to it is fine; renaming or removing an entry
// is a breaking change.
var (
	contractCommands = []string{
		"env list", "env pull", "env inspect", "env prune", "mcp serve", "run",
		"workspace create", "workspace sync push", "workspace exec", "workspace status",
		"workspace logs", "workspace delete", "doctor", "demo", "demo ollama",
		"host connect", "host print-config", "host doctor", "host repair", "host disconnect",
		"workspace list", "workspace update", "workspace shell open", "workspace shell write", "workspace shell read",
		"workspace shell signal", "workspace shell close", "workspace shell list", "workspace shell attach",
		"workspace service start", "workspace service list", "workspace service status", "workspace service logs",
		"workspace service stop",
	}
	// contractFlags are flags the contract names explicitly, per command.
	contractFlags = map[string][]string{
		"run":                 {"vcpu-count", "mem-mib", "timeout-seconds", "ttl-seconds", "network", "allow-host-compat", "json"},
		"workspace create":    {"seed-path", "vcpu-count", "mem-mib", "ttl-seconds", "network", "allow-host-compat", "json"},
		"workspace sync push": {"dest"},
		"workspace exec":      {"timeout-seconds"},
		"env list":            {"json"}, "env pull": {"json"}, "env inspect": {"json"}, "env prune": {"json"}, "doctor": {"json"},
	}
	// contractPython maps each public Python name to its signature: "" when
	// the contract leaves the arguments open ("(...)"), else the exact
	// parameter list, keyword-only marker and defaults included.
	contractPython = map[string]string{
		"create_server":       "(profile=None)",
		"list_environments":   "()",
		"pull_environment":    "(environment)",
		"inspect_environment": "(environment)",
		"prune_environments":  "()",
		"create_vm":           "",
		"create_workspace":    "",
		"push_workspace_sync": `(workspace_id, source_path, *, dest="/workspace")`,
		"start_vm":            "(vm_id)",
		"exec_vm":             "(vm_id, *, command, timeout_seconds=30)",
		"exec_workspace":      "(workspace_id, *, command, timeout_seconds=30, secret_env=None)",
		"stop_vm":             "(vm_id)",
		"delete_vm":           "(vm_id)",
		"delete_workspace":    "(workspace_id)",
		"status_vm":           "(vm_id)",
		"status_workspace":    "(workspace_id)",
		"logs_workspace":      "(workspace_id)",
		"network_info_vm":     "(vm_id)",
		"reap_expired":        "()",
		"run_in_vm":           "",
		"list_workspaces":     "(labels=None)",
		"update_workspace":    "(workspace_id, *, name=None, labels=None, clear_labels=None, ttl_seconds=None)",
		"open_shell":          `(workspace_id, cwd="/workspace", cols=120, rows=30, secret_env=None)`,
		"write_shell":         "(workspace_id, shell_id, input, append_newline=True)",
		"read_shell":          "(workspace_id, shell_id, cursor=0, max_chars=65536, plain=False, wait_for_idle_ms=None)",
		"signal_shell":        `(workspace_id, shell_id, signal_name="INT")`,
		"close_shell":         "(workspace_id, shell_id)",
		"list_shells":         "(workspace_id)",
		"start_service":       `(workspace_id, name, command, cwd="/workspace", readiness=None, ready_timeout_seconds=30, ready_interval_ms=500, restart="no", secret_env=None)`,
		"list_services":       "(workspace_id)",
		"status_service":      "(workspace_id, name)",
		"logs_service":        "(workspace_id, name, tail_lines=200, all=False)",
		"stop_service":        "(workspace_id, name)",
	}
	contractTools = []string{
		"vm_run", "vm_list_environments", "vm_create", "vm_start", "vm_exec", "vm_stop", "vm_delete",
		"vm_status", "vm_network_info", "vm_reap_expired",
		"workspace_create", "workspace_sync_push", "workspace_exec", "workspace_status",
		"workspace_logs", "workspace_delete", "workspace_list", "workspace_update",
		"shell_open", "shell_write", "shell_read", "shell_signal", "shell_close", "shell_list",
		"service_start", "service_list", "service_status", "service_logs", "service_stop",
	}
	// contractToolDefaults are the defaults the contract promises.
	contractToolDefaults = map[string]map[string]any{
		"vm_run":           {"vcpu_count": 1.0, "mem_mib": 1024.0, "allow_host_compat": false},
		"vm_create":        {"vcpu_count": 1.0, "mem_mib": 1024.0, "allow_host_compat": false},
		"workspace_create": {"vcpu_count": 1.0, "mem_mib": 1024.0, "allow_host_compat": false},
	}
	// contractOptional are arguments the contract promises are optional.
	contractOptional = map[string][]string{
		"workspace_create":    {"seed_path"},
		"workspace_sync_push": {"dest"},
	}
	contractGo = []string{
		"CreateServer", "ListEnvironments", "PullEnvironment", "InspectEnvironment", "PruneEnvironments",
		"CreateVM", "CreateWorkspace", "PushWorkspaceSync", "StartVM", "ExecVM", "ExecWorkspace", "StopVM",
		"DeleteVM", "DeleteWorkspace", "StatusVM", "StatusWorkspace", "LogsWorkspace", "NetworkInfoVM",
		"ReapExpired", "RunInVM", "CreateServerWith",
		"ListWorkspaces", "ListWorkspacesWith", "UpdateWorkspace", "OpenShell", "WriteShell", "ReadShell", "SignalShell",
		"CloseShell", "ListShells", "AttachShell", "StartService", "ListServices", "StatusService", "LogsService", "StopService",
	}
)

// ---- 1. every documented `pyro ...` command line parses against the CLI ----

// cmdLine is one `pyro ...` command line found in a document.
type cmdLine struct {
	file string
	line int
	text string   // as written
	args []string // after "pyro"
}

func (c cmdLine) String() string { return fmt.Sprintf("%s:%d: `%s`", c.file, c.line, c.text) }

func TestDocumentedCommandsParse(t *testing.T) {
	var n int
	for _, file := range docFiles(t) {
		for _, c := range commandLines(t, file) {
			n++
			if err := checkCommandLine(c.args); err != nil {
				t.Errorf("%s: %v", c, err)
			}
		}
	}
	if n < 20 {
		t.Fatalf("found only %d pyro command lines in the docs; is the extractor broken?", n)
	}
	t.Logf("checked %d documented command lines", n)
}

// checkCommandLine finds the command args name in the real cobra tree and
// parses its flags, as `pyro` would before running it.
func checkCommandLine(args []string) error {
	if len(args) > 0 && placeholder.MatchString(args[0]) {
		return nil // `pyro COMMAND --help`: about every command
	}
	root := cli.NewRootCommand()
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	cmd, rest, err := root.Find(args)
	if err != nil {
		return err
	}
	if cmd.Deprecated != "" {
		return fmt.Errorf("%q is deprecated: %s", cmd.CommandPath(), cmd.Deprecated)
	}
	// Execute adds these two flags; Find does not.
	cmd.InitDefaultHelpFlag()
	cmd.InitDefaultVersionFlag()
	rest = fillPlaceholders(cmd, rest)
	if err := cmd.ParseFlags(rest); err != nil {
		return fmt.Errorf("%s: %v", cmd.CommandPath(), err)
	}
	pos := cmd.Flags().Args()
	if !cmd.Runnable() {
		if len(pos) > 0 {
			return fmt.Errorf("%s has no subcommand %q (it has: %s)", cmd.CommandPath(), pos[0], subNames(cmd))
		}
		return nil
	}
	// A bare `pyro workspace status` names the command; only check the
	// arguments of lines that give some.
	if len(pos) > 0 || cmd.ArgsLenAtDash() >= 0 {
		if err := cmd.ValidateArgs(pos); err != nil {
			return fmt.Errorf("%s: %v (usage: %s)", cmd.CommandPath(), err, cmd.UseLine())
		}
	}
	return nil
}

func subNames(c *cobra.Command) string {
	var names []string
	for _, s := range c.Commands() {
		names = append(names, s.Name())
	}
	return strings.Join(names, ", ")
}

var placeholder = regexp.MustCompile(`^(<[^<>]+>|[A-Z][A-Z0-9_]*(\.\.\.)?|N|\.\.\.)$`)

// fillPlaceholders gives a flag whose documented value is a placeholder
// (`--mem-mib N`, `--timeout-seconds=SECONDS`) a value its type accepts.
func fillPlaceholders(cmd *cobra.Command, args []string) []string {
	out := slices.Clone(args)
	lookup := func(name string) *pflag.Flag {
		if f := cmd.Flags().Lookup(name); f != nil {
			return f
		}
		return cmd.InheritedFlags().Lookup(name)
	}
	for i := 0; i < len(out); i++ {
		a := out[i]
		if a == "--" {
			break
		}
		if !strings.HasPrefix(a, "--") {
			continue
		}
		name, val, hasVal := strings.Cut(a[2:], "=")
		f := lookup(name)
		if f == nil || f.NoOptDefVal != "" {
			continue
		}
		if hasVal {
			if placeholder.MatchString(val) {
				out[i] = "--" + name + "=" + sampleValue(f)
			}
		} else if i+1 < len(out) && placeholder.MatchString(out[i+1]) {
			out[i+1] = sampleValue(f)
			i++
		}
	}
	return out
}

func sampleValue(f *pflag.Flag) string {
	switch f.Value.Type() {
	case "int", "int64", "uint", "uint64", "int32", "float64", "duration":
		if f.Value.Type() == "duration" {
			return "1s"
		}
		return "1"
	}
	return "x"
}

// docFiles lists README.md and every docs/**/*.md, relative to the root.
func docFiles(t *testing.T) []string {
	t.Helper()
	files := []string{"README.md"}
	err := filepath.WalkDir(filepath.Join(repoRoot, "docs"), func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(p, ".md") {
			rel, _ := filepath.Rel(repoRoot, p)
			files = append(files, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(files)
	return files
}

var inlineCode = regexp.MustCompile("`([^`\n]+)`")

// skipLang are fenced block languages whose lines are not shell.
var skipLang = map[string]bool{"json": true, "jsonc": true, "python": true, "py": true, "go": true, "yaml": true, "toml": true, "text": true, "txt": true}

// commandLines extracts the `pyro ...` command lines of a markdown file: in
// shell-like fenced blocks, lines that start with pyro (after an optional
// "$ " prompt; in console blocks only prompted lines), and `pyro ...` after
// `claude mcp add NAME --` or `codex mcp add NAME --`; in prose, inline code
// spans that start with "pyro ".
func commandLines(t *testing.T, file string) []cmdLine {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot, file))
	if err != nil {
		t.Fatal(err)
	}
	var out []cmdLine
	add := func(line int, text string, inBlock bool) {
		toks, ok := shellWords(text)
		if !ok || len(toks) == 0 {
			return
		}
		start := -1
		if isPyro(toks[0]) {
			start = 0
		} else if inBlock && (toks[0] == "claude" || toks[0] == "codex") {
			if i := slices.Index(toks, "--"); i >= 0 && i+1 < len(toks) && isPyro(toks[i+1]) {
				start = i + 1
			}
		}
		if start < 0 || len(toks) == start+1 {
			return
		}
		out = append(out, cmdLine{file: file, line: line, text: strings.TrimSpace(text), args: stripOptional(toks[start+1:])})
	}
	sc := bufio.NewScanner(strings.NewReader(string(data)))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	inBlock, lang := false, ""
	for n := 1; sc.Scan(); n++ {
		l := sc.Text()
		trim := strings.TrimSpace(l)
		if strings.HasPrefix(trim, "```") {
			if inBlock {
				inBlock = false
			} else {
				inBlock, lang = true, strings.ToLower(strings.TrimSpace(strings.TrimPrefix(trim, "```")))
			}
			continue
		}
		if inBlock {
			if skipLang[lang] || strings.ContainsAny(trim, boxDrawing) {
				continue
			}
			if lang == "console" || lang == "shell-session" {
				if !strings.HasPrefix(trim, "$ ") {
					continue
				}
			}
			add(n, strings.TrimPrefix(trim, "$ "), true)
			continue
		}
		for _, m := range inlineCode.FindAllStringSubmatch(l, -1) {
			if strings.HasPrefix(m[1], "pyro ") {
				add(n, m[1], false)
			}
		}
	}
	return out
}

// boxDrawing marks a line of a diagram, not a command.
const boxDrawing = "─│┌┐└┘├┤┬┴┼"

func isPyro(s string) bool {
	return s == "pyro" || s == "bin/pyro" || s == "./bin/pyro"
}

// stripOptional unwraps synopsis brackets: `[--dest WORKSPACE_PATH]`
// becomes `--dest WORKSPACE_PATH`; `[ARG...]` and `|` alternatives go.
func stripOptional(toks []string) []string {
	var out []string
	for i, tk := range toks {
		if tk == "--" {
			return append(out, toks[i:]...)
		}
		if tk == "|" || tk == "[ARG...]" || tk == "..." {
			continue
		}
		tk = strings.TrimPrefix(tk, "[")
		tk = strings.TrimSuffix(tk, "]")
		if tk != "" {
			out = append(out, tk)
		}
	}
	return out
}

// shellWords splits a line into words as a POSIX shell would (quotes and
// backslashes), ending it at a comment or at a shell operator that is not
// part of the command (|, &&, ;, redirections).
func shellWords(s string) ([]string, bool) {
	var words []string
	var cur strings.Builder
	have := false
	flush := func() {
		if have {
			words = append(words, cur.String())
		}
		cur.Reset()
		have = false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, false
			}
			cur.WriteString(s[i+1 : i+1+j])
			have = true
			i += j + 1
		case c == '"':
			i++
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) {
					i++
				}
				cur.WriteByte(s[i])
			}
			if i >= len(s) {
				return nil, false
			}
			have = true
		case c == '\\' && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
			have = true
		case c == ' ' || c == '\t':
			flush()
		case c == '#' && !have:
			flush()
			return words, true
		case c == '<' && !have && strings.IndexByte(s[i:], '>') > 1 && !strings.ContainsAny(s[i+1:i+strings.IndexByte(s[i:], '>')], " |&;"):
			// <placeholder>
			j := strings.IndexByte(s[i:], '>')
			cur.WriteString(s[i : i+j+1])
			have = true
			i += j
		case c == '|' || c == ';' || c == '&' || c == '>' || c == '<' || c == '`' || c == ')':
			if c == '>' && have && strings.HasSuffix(cur.String(), "2") && cur.Len() == 1 {
				cur.Reset()
				have = false
			}
			flush()
			return words, true
		default:
			cur.WriteByte(c)
			have = true
		}
	}
	flush()
	return words, true
}

func TestShellWords(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{`pyro run debian:12 -- git --version`, []string{"pyro", "run", "debian:12", "--", "git", "--version"}},
		{`pyro run debian:12 -- "cc --version && make"  # both`, []string{"pyro", "run", "debian:12", "--", "cc --version && make"}},
		{`pyro run <environment> -- <command>`, []string{"pyro", "run", "<environment>", "--", "<command>"}},
		{`pyro env list --json | jq .`, []string{"pyro", "env", "list", "--json"}},
		{`pyro doctor 2>&1 >/dev/null`, []string{"pyro", "doctor"}},
		{`pyro run debian:12 -- sh -c 'echo a; echo b'`, []string{"pyro", "run", "debian:12", "--", "sh", "-c", "echo a; echo b"}},
	} {
		got, _ := shellWords(tc.in)
		if !slices.Equal(got, tc.want) {
			t.Errorf("shellWords(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	for _, bad := range [][]string{
		{"run", "--vcpus", "2", "debian:12", "--", "true"},
		{"workspace", "frobnicate", "X"},
		{"workspace", "status"}, // fine: names the command
		{"workspace", "status", "A", "B"},
		{"nosuchverb"},
	} {
		err := checkCommandLine(bad)
		if (err == nil) != (len(bad) == 2 && bad[1] == "status") {
			t.Errorf("checkCommandLine(%q) = %v", bad, err)
		}
	}
	if err := checkCommandLine(stripOptional([]string{"workspace", "exec", "WORKSPACE_ID", "[--timeout-seconds", "N]", "--", "CMD..."})); err != nil {
		t.Errorf("synopsis: %v", err)
	}
}

// ---- 2. the contract: named in docs/public-contract.md, present in code ----

func readContractDoc(t *testing.T) (string, []string) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot, contractDoc))
	if err != nil {
		t.Fatalf("%s: %v (the public contract reference must exist)", contractDoc, err)
	}
	return string(data), strings.Split(string(data), "\n")
}

// docSpans are the inline code spans of the contract document.
func docSpans(doc string) []string {
	var spans []string
	for _, m := range inlineCode.FindAllStringSubmatch(doc, -1) {
		spans = append(spans, m[1])
	}
	return spans
}

func TestContractCLI(t *testing.T) {
	doc, _ := readContractDoc(t)
	spans := docSpans(doc)
	root := cli.NewRootCommand()
	for _, path := range contractCommands {
		cmd, rest, err := root.Find(strings.Fields(path))
		if err != nil || len(rest) > 0 || cmd.CommandPath() != "pyro "+path {
			t.Errorf("contract command `pyro %s` does not exist in the CLI (internal/cli)", path)
			continue
		}
		if !slices.ContainsFunc(spans, func(s string) bool { return s == "pyro "+path || strings.HasPrefix(s, "pyro "+path+" ") }) {
			t.Errorf("%s: contract command `pyro %s` is not named (as inline code starting with it)", contractDoc, path)
		}
		for _, flag := range contractFlags[path] {
			if cmd.Flags().Lookup(flag) == nil && cmd.InheritedFlags().Lookup(flag) == nil {
				t.Errorf("contract flag --%s of `pyro %s` does not exist in the CLI", flag, path)
			}
		}
		// Every flag of a public command is public: the document lists them all.
		cmd.LocalFlags().VisitAll(func(f *pflag.Flag) {
			if f.Hidden || f.Name == "help" {
				return
			}
			if !strings.Contains(commandSection(doc, path), "--"+f.Name) {
				t.Errorf("%s: flag --%s of `pyro %s` exists in the CLI but is not documented in that command's entry", contractDoc, f.Name, path)
			}
		})
	}
}

// commandSection is the part of the contract document about one command:
// the lines of its table row or list item (those mentioning `pyro PATH`).
func commandSection(doc, path string) string {
	var b strings.Builder
	for _, l := range strings.Split(doc, "\n") {
		if strings.Contains(l, "`pyro "+path+"`") || strings.Contains(l, "`pyro "+path+" ") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

func TestContractGoSDK(t *testing.T) {
	doc, lines := readContractDoc(t)
	ct := reflect.TypeOf((*pyro.Client)(nil))
	for _, name := range contractGo {
		if _, ok := ct.MethodByName(name); !ok {
			t.Errorf("contract Go method (*pyro.Client).%s does not exist", name)
		}
		if !regexp.MustCompile(`\b` + name + `\b`).MatchString(doc) {
			t.Errorf("%s: contract Go method %s is not named", contractDoc, name)
		}
	}
	// Go methods the document names must exist.
	re := regexp.MustCompile("`(?:c\\.|Client\\.|\\(\\*Client\\)\\.)([A-Z]\\w*)")
	for i, l := range lines {
		for _, m := range re.FindAllStringSubmatch(l, -1) {
			if _, ok := ct.MethodByName(m[1]); !ok {
				t.Errorf("%s:%d: names Go method %s, which (*pyro.Client) does not have", contractDoc, i+1, m[1])
			}
		}
	}
}

// pythonSignatures introspects the Python facade: name -> "(a, *, b=1)".
func pythonSignatures(t *testing.T) map[string]string {
	t.Helper()
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not installed; cannot check the Python facade")
	}
	const script = `
import inspect, json, pyro_mcp
def sig(f, drop_self):
    parts, star = [], False
    for i, p in enumerate(inspect.signature(f).parameters.values()):
        if drop_self and i == 0: continue
        if p.kind == p.KEYWORD_ONLY and not star:
            parts.append("*"); star = True
        if p.kind == p.VAR_POSITIONAL: star = True
        s = p.name
        if p.default is not p.empty: s += "=" + (json.dumps(p.default) if isinstance(p.default, str) else repr(p.default))
        parts.append(s)
    return "(" + ", ".join(parts) + ")"
out = {n: sig(m, True) for n, m in inspect.getmembers(pyro_mcp.Pyro, inspect.isfunction) if not n.startswith("_")}
out["module.create_server"] = sig(pyro_mcp.create_server, False)
print(json.dumps(out))
`
	cmd := exec.Command(py, "-c", script)
	cmd.Env = append(os.Environ(), "PYTHONPATH="+filepath.Join(repoRoot, "python"))
	data, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("introspecting python/pyro_mcp: %v\n%s", err, ee.Stderr)
		}
		t.Fatal(err)
	}
	sigs := map[string]string{}
	if err := json.Unmarshal(data, &sigs); err != nil {
		t.Fatal(err)
	}
	return sigs
}

func TestContractPython(t *testing.T) {
	doc, lines := readContractDoc(t)
	sigs := pythonSignatures(t)
	if _, ok := sigs["module.create_server"]; !ok {
		t.Errorf("python/pyro_mcp does not define the module-level create_server()")
	}
	for name, want := range contractPython {
		got, ok := sigs[name]
		if !ok {
			t.Errorf("contract Python method Pyro.%s is not defined in python/pyro_mcp", name)
			continue
		}
		if want != "" && got != want {
			t.Errorf("Pyro.%s has signature %s in python/pyro_mcp, the contract says %s", name, got, want)
		}
		documented := "Pyro." + name + "("
		if want != "" {
			documented = "Pyro." + name + want
		}
		if !strings.Contains(doc, documented) {
			t.Errorf("%s: contract Python method is not documented as `%s`", contractDoc, documented)
		}
	}
	// Python methods the document names must exist, with the signature shown.
	re := regexp.MustCompile(`Pyro\.([a-z_]+)(\([^)]*\))`)
	for i, l := range lines {
		for _, m := range re.FindAllStringSubmatch(l, -1) {
			got, ok := sigs[m[1]]
			switch {
			case !ok:
				t.Errorf("%s:%d: names Pyro.%s, which python/pyro_mcp does not define", contractDoc, i+1, m[1])
			case m[2] != "(...)" && !strings.Contains(m[2], "...") && m[2] != got:
				t.Errorf("%s:%d: shows Pyro.%s%s, but its signature is %s", contractDoc, i+1, m[1], m[2], got)
			}
		}
	}
}

// registeredTools lists the MCP server's tools as a client sees them.
func registeredTools(t *testing.T) map[string]*mcp.Tool {
	t.Helper()
	run, err := os.MkdirTemp("", "pyro-docscheck-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(run) })
	e, err := engine.New(engine.Options{CacheDir: t.TempDir(), StateDir: t.TempDir(), RuntimeDir: run})
	if err != nil {
		t.Fatal(err)
	}
	s, err := mcpserver.New(e, nil)
	if err != nil {
		t.Fatal(err)
	}
	ct, st := mcp.NewInMemoryTransports()
	ss, err := s.MCP().Connect(t.Context(), st, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ss.Close() })
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "docscheck", Version: "0"}, nil).Connect(t.Context(), ct, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cs.Close() })
	res, err := cs.ListTools(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	tools := map[string]*mcp.Tool{}
	for _, tool := range res.Tools {
		tools[tool.Name] = tool
	}
	return tools
}

// toolSchema is the part of an input schema this check reads.
type toolSchema struct {
	Properties map[string]struct {
		Default any `json:"default"`
	} `json:"properties"`
	Required []string `json:"required"`
}

func TestContractMCP(t *testing.T) {
	doc, lines := readContractDoc(t)
	tools := registeredTools(t)
	schemas := map[string]toolSchema{}
	for name, tool := range tools {
		data, err := json.Marshal(tool.InputSchema)
		if err != nil {
			t.Fatal(err)
		}
		var s toolSchema
		if err := json.Unmarshal(data, &s); err != nil {
			t.Fatal(err)
		}
		schemas[name] = s
	}
	for _, name := range contractTools {
		if _, ok := tools[name]; !ok {
			t.Errorf("contract MCP tool %s is not registered by internal/mcpserver", name)
		}
		if !strings.Contains(doc, "`"+name+"`") {
			t.Errorf("%s: contract MCP tool `%s` is not named", contractDoc, name)
		}
	}
	for name, defs := range contractToolDefaults {
		for arg, want := range defs {
			p, ok := schemas[name].Properties[arg]
			if !ok || !reflect.DeepEqual(p.Default, want) {
				t.Errorf("MCP tool %s: argument %s has default %v in its input schema, the contract says %v", name, arg, p.Default, want)
			}
		}
	}
	for name, args := range contractOptional {
		for _, arg := range args {
			if _, ok := schemas[name].Properties[arg]; !ok || slices.Contains(schemas[name].Required, arg) {
				t.Errorf("MCP tool %s: argument %s must exist and be optional", name, arg)
			}
		}
	}
	// The document's tool table: one row per tool, naming every argument,
	// required ones in bold; no row for a tool that does not exist.
	rowRE := regexp.MustCompile("^\\|\\s*`([a-z_]+)`\\s*\\|")
	rows := map[string]int{}
	for i, l := range lines {
		m := rowRE.FindStringSubmatch(l)
		if m == nil || !slices.ContainsFunc([]string{"vm_", "workspace_", "snapshot_", "shell_", "service_"}, func(p string) bool { return strings.HasPrefix(m[1], p) }) {
			continue
		}
		name := m[1]
		rows[name] = i + 1
		s, ok := schemas[name]
		if !ok {
			t.Errorf("%s:%d: documents MCP tool %s, which is not registered", contractDoc, i+1, name)
			continue
		}
		for arg := range s.Properties {
			req := slices.Contains(s.Required, arg)
			switch {
			case req && !strings.Contains(l, "**`"+arg+"`**"):
				t.Errorf("%s:%d: tool %s: required argument %s must appear as **`%s`**", contractDoc, i+1, name, arg, arg)
			case !req && !strings.Contains(l, "`"+arg+"`"):
				t.Errorf("%s:%d: tool %s: argument %s is not documented in its row", contractDoc, i+1, name, arg)
			case !req && strings.Contains(l, "**`"+arg+"`**"):
				t.Errorf("%s:%d: tool %s: argument %s is optional but shown as required", contractDoc, i+1, name, arg)
			}
		}
		// The second cell lists the arguments; each must be one.
		if cells := strings.Split(l, "|"); len(cells) > 2 {
			for _, a := range regexp.MustCompile("`([a-z_]+)`").FindAllStringSubmatch(cells[2], -1) {
				if _, ok := s.Properties[a[1]]; !ok {
					t.Errorf("%s:%d: tool %s has no argument %s", contractDoc, i+1, name, a[1])
				}
			}
		}
	}
	for name := range tools {
		if _, ok := rows[name]; !ok {
			t.Errorf("%s: registered MCP tool %s has no row (| `%s` | ...) in the tool table", contractDoc, name, name)
		}
	}
}
