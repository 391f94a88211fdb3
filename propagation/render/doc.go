// Package render turns a Baseline's sources into the validated objects the propagation
// controller applies. It owns the meaning of a source: how multi-document YAML is split and
// numbered, which documents are accepted, which server-set fields are stripped, the
// revision hash, per-cluster ${VAR} substitution, the perNamespace fan-out and the order
// of a staged apply.
//
// # Usage
//
// The Baseline controller reads the sources from the hub, names each one in words a person
// can find (for example "resources[1] (ConfigMap flotilla-system/addons, key quota.yaml)"),
// and then, per revision and per member:
//
//	rev := render.Revision(resources, perNamespace, spec.Substitute)
//	docs, err := render.Parse(resources, spec.Substitute)   // err: Stalled, nothing moves
//	// per member:
//	vars := render.Variables(member.Name, member.Labels, spec.Substitute)
//	docs, err = render.Substitute(docs, vars)               // only when spec.Substitute != nil
//	for _, stage := range render.Stage(docs) { ... apply stage ... }
//
// perNamespace sources go through Parse (and Substitute) the same way and then through
// InNamespace once per selected member namespace; CheckUnique over everything one member
// receives catches an object defined both in resources and in perNamespace.
//
// # What it must not do
//
// Everything here is pure: no API calls, no clients, no file or network I/O, no logging and
// no global state, so it is table-tested without a cluster and gives the same answer on
// every replica. It does not know which kinds a member serves or whether they are
// namespaced; the controller asks the member. Errors are all-or-nothing: a function that
// reports an error returns no objects, so nothing from a revision that does not parse is
// applied anywhere.
//
// Sources read from Secrets are marked Sensitive. Their errors name the source, document and
// line but never quote content: parser messages (which can quote the offending bytes) are
// reduced to line numbers, and invalid field values are not echoed.
package render
