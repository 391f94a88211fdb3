// Package servicesync owns cross-cluster service discovery: it discovers Services annotated
// fleet.flotilla.dev/export in every connected member, computes their mirrors (a selectorless
// Service plus Endpoints and EndpointSlices named <service>-<cluster>) in the other members,
// writes and garbage-collects those mirrors, and keeps the hub's ExportedService catalog.
//
// It reaches members only through the clusters connection-manager interface, identifies
// mirrors by their ownership labels (never by parsing names), and never updates or deletes an
// object without those labels.
package servicesync
