// Package mirror computes, from one exported Service and what its addresses come from, the
// objects that mirror it into the other member clusters. It is pure computation: it makes no
// API calls, does no I/O, keeps no state and never logs; the servicesync controller reads the
// inputs from member caches, calls this package, and writes what it returns.
//
// It owns:
//   - the export request: ParseExport validates the fleet.flotilla.dev/export, export-to and
//     address-mode annotations of a source Service and refuses mirrors and system namespaces;
//   - the addresses: Resolve turns an address mode (Auto resolved) into reachable endpoints and
//     ports, refusing loopback, link-local, unspecified, multicast and invalid addresses, and
//     pod IPs outside the source Nodes' pod CIDRs (node ports come from the Nodes only);
//   - the mirror's identity: Name (<service>-<cluster>, hash-shortened to a DNS-1035 label of at
//     most 63 characters), Labels and Owned (ownership is read from labels, never from names);
//   - the mirror objects: Objects builds the selectorless Service, its Endpoints and its
//     EndpointSlices, deterministically, so that identical inputs give identical objects;
//   - the diff: NeedsUpdate compares only the fields a mirror sets, tolerating API-server
//     defaults, so that a controller writes nothing when nothing changed; Apply copies those
//     fields onto the object read from the server.
//
// It must not decide where mirrors go (targets, export-to matching), nor whether an existing
// object may be touched beyond answering Owned: both belong to the controller.
package mirror
