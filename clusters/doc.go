// Package clusters owns the cluster registry of the hub: registration sources (kubeconfig
// Secrets, Cluster API Clusters), the credential policy, the MemberCluster reconciler and the
// connection manager that gives other controllers a client and a scoped cache per member and
// tells them when a member connects or disconnects.
//
// It also owns the hub's trust boundaries towards members, set by controller flags only:
//   - the registration scope (registration.go): which Secrets a MemberCluster may name (the
//     hub namespace; a Cluster API namespace only for the member registered from its Cluster),
//     which Clusters register and which of their labels are copied;
//   - the credential policy (credentials.go): no exec, auth-provider, file references or
//     insecure TLS unless allowed;
//   - the member endpoint policy (endpoint.go): https only, no proxy-url, no link-local or
//     metadata addresses, loopback only when allowed — checked before any request and again
//     by the dialer of every member connection;
//   - classified probe errors (probeerrors.go): status carries a reason and a message written
//     here, never text from a member's answer.
//
// # Member caches
//
// A member cache holds only the kinds controllers registered, each scoped as registered.
// RegisterWatch kinds start with the cache; RegisterOnDemand kinds start only while some
// holder (an export that publishes node addresses, say) Demands them in that member, are
// started again after a reconnect while still demanded, and are removed with their store
// when the last holder lets go, so that the hub holds them only while they are used. A kind
// no server-side selector can scope can be filtered instead (RegisterFilter, filter.go): its
// objects still arrive, but only those the filter keeps enter the cache, and one that stops
// being kept leaves it as a deletion.
//
// The member cache is this package's own (membercache.go, memberwatch.go), not
// controller-runtime's: a client-go informer costs 13–14 goroutines per kind and member,
// which at a thousand members is more than a hub can hold. Here each kind is a store and
// one goroutine that lists it in pages, watches from the list's resourceVersion (with
// bookmarks, through the member's one shared HTTP/2 transport), applies the filter and
// transform inline and calls the handlers itself — three goroutines per kind with the
// watch's stream and decoder. That rests on one rule for handlers: they only map an object
// to requests and add them to a queue, never block. A watch that ends is resumed from the
// last resourceVersion seen; one the member compacted past (410 Gone) is replaced by a
// relist, which delivers the deletions it finds. Reads behave as controller-runtime's cache
// with ReaderFailOnMissingInformer: a kind that is not running fails, a kind that has not
// synced is waited for, results are copies. Stopping a member stops every goroutine of it.
//
// It must not know what other controllers do with a member: propagation and servicesync
// consume its small connection-manager interface, never its internals.
//
// # Faults
//
// A member that stops answering after it connected must cost the rest of the fleet
// nothing. The connection manager therefore bounds every call: member clients carry
// Options.RequestTimeout both as their rest.Config Timeout and as a per-call context
// deadline (whatever context the caller passes), cache reads are bounded the same way
// (a read of a kind not synced yet waits for it), discovery of new kinds goes through a
// mapper with the timeout and runs in the background per member, and a new cache must sync
// within CacheSyncTimeout before the member counts as connected. Only the member cache's
// watches run without a timeout (list pages have one); they stop when the member disconnects.
//
// Probes run at a fixed rate (a probe that waited for its timeout does not push the next one
// back), so a hung member is disconnected within ProbeInterval × FailureThreshold plus one
// ProbeTimeout. A member that was connected before is probed every interval while away, so
// it is back within one interval of answering; backoff is for members never seen.
//
// Consumers bound the work per member with MemberSlots: shared workers serve the whole
// fleet, and a reconcile holds one of its member's few slots while it talks to the member,
// waiting for one only briefly. A hung member can hold at most its slots' worth of workers,
// and only until their calls time out; every other reconcile of it gives its worker back
// and retries shortly, so several hung members cannot occupy all workers.
//
// # Leaving
//
// A MemberCluster carries the finalizer fleet.flotilla.dev/member-cleanup. When it is
// deleted, the propagation and servicesync controllers clean up through the still-open
// connection (their BaselineBindings and ExportedServices are what this package waits for);
// the connection is closed and the finalizer removed only when nothing is left, or after
// CleanupTimeout (an unreachable member). A paused member gets no writes: it waits only
// for the mirrors of its own exports to leave the other members. What was left behind is
// reported in a condition and an event.
//
// A Cluster API Cluster that is paused or being moved by clusterctl never unregisters its
// member: the MemberCluster is marked, survives the Cluster's deletion, and follows the
// Cluster when it reappears in another namespace.
package clusters
