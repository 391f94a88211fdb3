// Package e2e holds Flotilla's end-to-end specs. They drive the real fleet-controller binary
// and fleetctl as a user would, against a backend that provides a hub and member clusters:
// local control planes (package localfleet) everywhere, kind clusters where Docker runs them.
package e2e
