// Package version holds the build version of Flotilla's binaries, so that fleetctl,
// fleet-controller and image tags agree. The Makefile stamps it with -ldflags -X (the
// version of hack/version.sh); `go install github.com/flotilla-dev/flotilla/cmd/fleetctl@vX`
// is not stamped, and the version comes from the module version Go records in the binary.
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// unstamped is Version's value when the build set none.
const unstamped = "v0.0.0-dev"

// Version and GitCommit are set at build time; the defaults mark an unstamped build.
var (
	Version   = unstamped
	GitCommit = "unknown"
)

// Info describes a build.
type Info struct {
	// Version is the release version, e.g. v0.2.0, or v0.2.0-3-gd867114-dirty between releases.
	Version string `json:"version"`
	// GitCommit is the short commit the binary was built from, "unknown" if nobody knows.
	GitCommit string `json:"gitCommit"`
	// GoVersion and Platform are the toolchain and GOOS/GOARCH of the build.
	GoVersion string `json:"goVersion"`
	Platform  string `json:"platform"`
}

// Get describes this binary.
func Get() Info {
	info, _ := debug.ReadBuildInfo()
	return resolve(Version, GitCommit, info)
}

// resolve picks the version: what the build stamped; else the module version of a
// `go install …@vX` (the main module's version, "(devel)" in a plain checkout build); else
// the unstamped default. The commit: stamped, else the VCS revision Go recorded.
func resolve(stamped, commit string, info *debug.BuildInfo) Info {
	out := Info{Version: stamped, GitCommit: commit, GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if info == nil {
		return out
	}
	if stamped == unstamped && info.Main.Version != "" && info.Main.Version != "(devel)" {
		out.Version = info.Main.Version
	}
	if commit == "unknown" {
		for _, s := range info.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 7 {
				out.GitCommit = s.Value[:7]
			}
		}
	}
	return out
}

// String is a one-line description of this build.
func String() string { return Get().String() }

// String is a one-line description of the build.
func (i Info) String() string {
	return fmt.Sprintf("%s (commit %s, %s, %s)", i.Version, i.GitCommit, i.GoVersion, i.Platform)
}

// Commit is the build's commit: the stamped one, or else the VCS revision `go build` records
// when built in a checkout without the Makefile, or "unknown".
func Commit() string {
	return Get().GitCommit
}
