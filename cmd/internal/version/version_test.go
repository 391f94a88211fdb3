package version

import (
	"runtime/debug"
	"testing"
)

func TestResolve(t *testing.T) {
	for _, tc := range []struct {
		name            string
		stamped, commit string
		info            *debug.BuildInfo
		wantVersion     string
		wantCommit      string
	}{
		{name: "make build stamps both", stamped: "v0.3.0-2-gabcdef0", commit: "abcdef0",
			info: &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, wantVersion: "v0.3.0-2-gabcdef0", wantCommit: "abcdef0"},
		{name: "go install @v1.2.3 records the module version", stamped: unstamped, commit: "unknown",
			info: &debug.BuildInfo{Main: debug.Module{Version: "v1.2.3"}}, wantVersion: "v1.2.3", wantCommit: "unknown"},
		{name: "a stamp wins over the module version", stamped: "v1.2.4", commit: "1234567",
			info: &debug.BuildInfo{Main: debug.Module{Version: "v1.2.3"}}, wantVersion: "v1.2.4", wantCommit: "1234567"},
		{name: "go build in a checkout: VCS revision, no version", stamped: unstamped, commit: "unknown",
			info:        &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "5c665a3f00"}}},
			wantVersion: unstamped, wantCommit: "5c665a3"},
		{name: "no build info", stamped: unstamped, commit: "unknown", wantVersion: unstamped, wantCommit: "unknown"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := resolve(tc.stamped, tc.commit, tc.info)
			if got.Version != tc.wantVersion || got.GitCommit != tc.wantCommit {
				t.Errorf("resolve = %s %s, want %s %s", got.Version, got.GitCommit, tc.wantVersion, tc.wantCommit)
			}
		})
	}
}
