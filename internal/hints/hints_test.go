package hints

import (
	"errors"
	"fmt"
	"testing"

	"github.com/pyro-mcp/pyro/internal/errdefs"
)

func TestRender(t *testing.T) {
	const h = "allow host compatibility (`allow_host_compat`) or see `ollama list`"
	for f, want := range map[Face]string{
		CLI: "allow host compatibility (--allow-host-compat) or see `ollama list`",
		MCP: "allow host compatibility (allow_host_compat: true) or see `ollama list`",
		Go:  "allow host compatibility (AllowHostCompat) or see `ollama list`",
	} {
		if got := Render(h, f); got != want {
			t.Errorf("Render(%d) = %q, want %q", f, got, want)
		}
	}
	if got := Render("unbalanced `dest", CLI); got != "unbalanced `dest" {
		t.Errorf("unbalanced: %q", got)
	}
}

func TestRehint(t *testing.T) {
	cause := errors.New("cause")
	base := errdefs.Wrap(errdefs.ErrInvalidArgument, cause, "give `dest` under /workspace", "destination %q is outside /workspace", "/etc")
	for _, err := range []error{base, fmt.Errorf("pushing: %w", base)} {
		got := Rehint(err, CLI)
		if got.Error() != err.Error() || errdefs.HintOf(got) != "give --dest under /workspace" || !errors.Is(got, errdefs.ErrInvalidArgument) {
			t.Errorf("Rehint(%v) = %v (hint %q)", err, got, errdefs.HintOf(got))
		}
	}
	if got := Rehint(base, CLI); !errors.Is(got, cause) {
		t.Errorf("the chain was lost: %v", got)
	}
	plain := errdefs.New(errdefs.ErrNotFound, "run 'pyro env pull debian:12'", "not installed")
	if Rehint(plain, CLI) != plain {
		t.Error("a hint without arguments was rewritten")
	}
}
