package engine

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/pyro-mcp/pyro/api"
)

func TestWithOrigin(t *testing.T) {
	for _, tc := range []struct {
		name string
		seed api.WorkspaceSeed
		o    *api.SeedOrigin
		want api.WorkspaceSeed
	}{
		{"directory", api.WorkspaceSeed{Mode: "directory", SourcePath: "/src", Entries: 2},
			nil, api.WorkspaceSeed{Mode: "directory", SourcePath: "/src", Entries: 2, OriginKind: "path", OriginRef: "/src"}},
		{"archive", api.WorkspaceSeed{Mode: "tar_archive", SourcePath: "/a.tgz"},
			nil, api.WorkspaceSeed{Mode: "tar_archive", SourcePath: "/a.tgz", OriginKind: "archive", OriginRef: "/a.tgz"}},
		{"project", api.WorkspaceSeed{Mode: "tar_archive", SourcePath: "/tmp/pyro-seed-1.tar", Entries: 3},
			&api.SeedOrigin{Kind: api.OriginProject, Ref: "/home/me/proj"},
			api.WorkspaceSeed{Mode: "directory", SourcePath: "/home/me/proj", Entries: 3, OriginKind: "project", OriginRef: "/home/me/proj"}},
		{"repo", api.WorkspaceSeed{Mode: "tar_archive", SourcePath: "/tmp/pyro-seed-2.tar"},
			&api.SeedOrigin{Kind: api.OriginRepo, Ref: "file:///r.git@0123abcd"},
			api.WorkspaceSeed{Mode: "directory", OriginKind: "repo", OriginRef: "file:///r.git@0123abcd"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, withOrigin(tc.seed, tc.o)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}
