// Package plan decides what an apply of one Baseline does in one member, so that
// fleet-controller's apply and `fleetctl diff` cannot disagree: both call Make and act on
// (or print) the same Plan.
//
// It owns these rules:
//
//   - placement: whether each desired object is Missing (created), Mine (updated), Adopt
//     (taken over under conflictPolicy Adopt) or a Conflict (left alone, with the reason).
//     An object whose UID is in the binding's inventory is Mine whatever its labels say
//     (labels can be stripped by any namespace editor; that must not switch enforcement
//     off), and the apply restores its labels with the rest of the desired state.
//     Abort/Adopt apply only to objects Flotilla never owned.
//   - what the policy lets the apply do with each placement (Enforce, Inform, CreateOnly);
//   - foreign content (ForeignFields): what other field managers added to an object the
//     Baseline owns and the Baseline does not set, read from its managedFields. Server-side
//     apply never removes it by itself, so Enforce takes it over and removes it (a
//     namespace editor adding `ingress: [{}]` must not switch a default-deny policy off);
//     Inform reports it as drift. Metadata, subresources and fields the cluster itself
//     writes by design are not foreign;
//   - unknown kinds: a kind the member does not serve fails the whole apply, unless a
//     CustomResourceDefinition of the same Baseline defines it;
//   - the prune set: inventory entries that left the Baseline, deleted only while still
//     owned, Namespaces and CRDs only when annotated fleet.flotilla.dev/prune: "true";
//   - the perNamespace selection: which member namespaces a selector picks (never one being
//     deleted);
//   - the stage order (render.Stage): the controller applies stage by stage and diff
//     shows objects in the same order.
//
// # What it must not do
//
// It makes no API calls of its own: the caller reads the member and hands plan what it
// observed through the small Observer interface (metadata of named objects) and a
// RESTMapper (which kinds the member serves). It writes nothing, logs nothing and keeps no
// state, so it is table-tested with fakes and gives every caller the same answer.
package plan
