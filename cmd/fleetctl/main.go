// Command fleetctl is Flotilla's command-line tool: it registers member clusters, shows the
// fleet's state and runs a local demo fleet. It finds the hub the way kubectl does.
package main

import (
	"fmt"
	"os"
)

func main() {
	err := newRootCommand(os.Stdout, os.Stderr).Execute()
	code, printable := exitCode(err)
	if printable {
		fmt.Fprintln(os.Stderr, "error:", err)
	}
	os.Exit(code)
}
