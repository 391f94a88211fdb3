// Package clusterstest provides a fake of clusters.MemberAccess for unit tests of code that
// maps member events to hub requests or chooses members (the map functions and target
// selection of propagation and servicesync). Each member's Reader and Client is whatever the
// test hands in (for example a controller-runtime fake client it built), and Connected lists
// exactly the members the test declared. Its event sources never deliver anything: a unit
// test calls the map function itself.
//
// It is test support only: product code must not import it, and it does not import
// "testing", so that a mistaken import does not link the test framework into a binary.
// Integration tests keep using real control planes through e2e/localfleet and the real
// connection manager; this fake answers only questions that need no API server.
package clusterstest
