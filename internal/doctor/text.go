package doctor

import (
	"fmt"
	"io"
	"strings"
)

// WriteText renders the report for a person.
func (r *Report) WriteText(w io.Writer) {
	p := r.Platform
	fmt.Fprintf(w, "platform:     %s/%s, kernel %s, %d CPUs, %s RAM\n", p.OS, p.Arch, p.Kernel, p.CPUs, mib(p.MemoryMiB))
	if r.Selected != "" {
		fmt.Fprintf(w, "backend:      %s (pyro will use it)\n", r.Selected)
	} else {
		fmt.Fprintf(w, "backend:      none: no isolated guest can boot here (host-compat only with --allow-host-compat)\n")
		if r.NoneReason != "" {
			fmt.Fprintf(w, "              why: %s\n", r.NoneReason)
		}
	}

	fmt.Fprintf(w, "\nways to run a guest:\n")
	for _, b := range r.Backends {
		mark := "no "
		if b.Works {
			mark = "ok "
			if !b.Isolated {
				mark = "opt"
			}
		}
		fmt.Fprintf(w, "  [%s] %-12s %s\n", mark, b.Name, b.Reason)
		if b.Fix != "" && !b.Works {
			fmt.Fprintf(w, "        %-12s fix: %s\n", "", b.Fix)
		}
	}

	k := r.KVM
	fmt.Fprintf(w, "\nkvm:\n")
	fmt.Fprintf(w, "  device:     %s present=%s readable=%s writable=%s", k.Device, yes(k.Present), yes(k.Readable), yes(k.Writable))
	if k.APIVersion != 0 {
		fmt.Fprintf(w, " api=%d", k.APIVersion)
	}
	if k.Module != "" {
		fmt.Fprintf(w, " module=%s", k.Module)
	}
	fmt.Fprintln(w)
	cached := ""
	if k.Cached {
		cached = " (cached)"
	}
	fmt.Fprintf(w, "  verdict:    %s%s: %s\n", k.Verdict, cached, k.Reason)
	if k.Deadline != "" {
		fmt.Fprintf(w, "  deadline:   %s\n", k.Deadline)
	}

	fmt.Fprintf(w, "\ntools:\n")
	for _, t := range r.Tools {
		switch {
		case t.Found:
			fmt.Fprintf(w, "  [ok ] %-20s %s\n", t.Name, t.Version)
		case t.Required:
			fmt.Fprintf(w, "  [no ] %-20s missing: apt-get install %s (%s)\n", t.Name, t.Package, t.Purpose)
		default:
			fmt.Fprintf(w, "  [-- ] %-20s optional, missing: apt-get install %s (%s)\n", t.Name, t.Package, t.Purpose)
		}
	}

	c := r.Cache
	state := "will be created"
	if c.Exists {
		state = "exists"
	}
	fmt.Fprintf(w, "\ncache:        %s (%s, %s free)\n", c.Dir, state, bytesHuman(c.FreeBytes))

	fmt.Fprintf(w, "environments:")
	switch e := r.Environments; {
	case e == nil:
		fmt.Fprintf(w, " unknown\n")
	case e.Error != "" && len(e.Items) == 0:
		fmt.Fprintf(w, " unreadable: %s\n", e.Error)
	default:
		fmt.Fprintln(w)
		for _, it := range e.Items {
			st := "not installed (pyro env pull " + it.Name + ")"
			if it.Installed {
				st = "installed " + it.InstalledVersion
				if it.Outdated {
					st += " (outdated: pyro env pull " + it.Name + ")"
				}
			}
			fmt.Fprintf(w, "  %-16s %s\n", it.Name, st)
		}
	}

	if t := r.Templates; t != nil {
		fmt.Fprintf(w, "warm start:   %s: pyro run %s, workspaces %s (PYRO_TEMPLATES=%s)\n", t.Environment, t.Status, t.Workspace, t.Policy)
		for _, v := range t.Templates {
			line := fmt.Sprintf("%s %s, %d vCPU, %d MiB", v.Kind, v.Status, v.VCPUCount, v.MemMiB)
			if v.Network {
				line += ", network"
			}
			if v.Reason != "" {
				line += " (" + v.Reason + ")"
			}
			fmt.Fprintf(w, "  template %s  %s\n", v.ID[:12], line)
		}
		if t.Hint != "" {
			fmt.Fprintf(w, "  hint: %s\n", t.Hint)
		}
	}

	bt := r.BootTest
	switch bt.Status {
	case "not_requested":
		fmt.Fprintf(w, "boot test:    not requested (pyro doctor --boot-test)\n")
	case "passed":
		fmt.Fprintf(w, "boot test:    passed in %d ms\n", bt.Millis)
	default:
		fmt.Fprintf(w, "boot test:    %s: %s\n", strings.ReplaceAll(bt.Status, "_", " "), bt.Detail)
	}
}

func yes(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func mib(m int) string {
	return fmt.Sprintf("%.1f GiB", float64(m)/1024)
}

func bytesHuman(b uint64) string {
	switch {
	case b >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(b)/(1<<30))
	case b >= 1<<20:
		return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20))
	default:
		return fmt.Sprintf("%d B", b)
	}
}
