// Package version holds the build version of Flotilla's binaries, stamped by the Makefile
// with -ldflags -X so that fleetctl, fleet-controller and image tags agree.
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Version and GitCommit are set at build time; the defaults mark an unstamped build.
var (
	Version   = "v0.0.0-dev"
	GitCommit = "unknown"
)

// String is a one-line description of this build.
func String() string {
	return fmt.Sprintf("%s (commit %s, %s, %s/%s)", Version, Commit(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// Commit is the build's commit: the stamped one, or else the VCS revision `go build` records
// when built in a checkout without the Makefile, or "unknown".
func Commit() string {
	commit := GitCommit
	if commit == "unknown" {
		if info, ok := debug.ReadBuildInfo(); ok {
			for _, s := range info.Settings {
				if s.Key == "vcs.revision" && len(s.Value) >= 7 {
					commit = s.Value[:7]
				}
			}
		}
	}
	return commit
}
