// Package workloads holds the programs the kind end-to-end specs run as pods: echo, an HTTP
// server that answers with its pod and cluster name, and client, which GETs a URL and prints
// what answered. `make e2e-images` builds each into a FROM-scratch image (Dockerfile here) that
// the kind backend loads into the member clusters; nothing is pulled from a registry.
//
// They are test programs: no shipped binary imports them, and they know nothing of Flotilla —
// the specs judge Flotilla by what these pods see.
package workloads
