// Package render turns a Baseline's sources into the validated objects the propagation
// controller applies. It owns the meaning of a source: how multi-document YAML is split and
// numbered, which documents are accepted, which server-set fields are stripped, the
// revision hash, per-cluster ${VAR} substitution, the perNamespace fan-out and the order
// of a staged apply.
//
// # Usage
//
// fleet-controller and `fleetctl diff` both read a Baseline with Read (ConfigMaps and
// Secrets of the hub namespace, each source named in words a person can find, for example
// "resources[1] (ConfigMap flotilla-system/addons, key quota.yaml)"), which runs:
//
//	sources, err := render.Sources(field, hubNamespace, spec.Resources, lookup)
//	rev := render.Revision(resources, perNamespace, spec.Substitute)
//	docs, err := render.Parse(resources, spec.Substitute)   // err: Stalled, nothing moves
//
// and then, per member, ForCluster (through propagation/plan.Desired) substitutes the
// member's variables, fans perNamespace documents out with InNamespace into the selected
// namespaces, checks with CheckUnique that no object is defined twice, and adds the
// ownership labels. propagation/plan sorts the result with Stage; the controller applies
// one stage at a time (within a stage, one kind at a time in the ssa engine's kind order)
// and waits after the stages WaitAfter names; `fleetctl diff` shows objects in the same
// stage order.
//
// # What it must not do
//
// Everything here except Read and ReadSources (Read's first half; fleet-controller parses a
// revision once and keeps the parse) is pure: no API calls, no clients, no file or network
// I/O, no logging and no global state; they read only through the readers they are given, and
// only ConfigMaps and Secrets of the hub namespace. The rest is table-tested without a
// cluster and gives the same answer on every replica. It does not know which kinds a member serves or whether they are
// namespaced; the controller asks the member. Errors are all-or-nothing: a function that
// reports an error returns no objects, so nothing from a revision that does not parse is
// applied anywhere.
//
// Sources read from Secrets are marked Sensitive. Their errors name the source, document and
// line but never quote content: parser messages (which can quote the offending bytes) are
// reduced to line numbers, and invalid field values are not echoed.
package render
