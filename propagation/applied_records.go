package propagation

import (
	"sync"

	"k8s.io/apimachinery/pkg/types"

	fleetv1alpha1 "github.com/flotilla-dev/flotilla/fleet/v1alpha1"
)

// appliedRecords remembers, per binding (by UID), the inventory its last apply in this
// process recorded. A binding's next reconcile often starts before the hub cache has seen
// the status write of the previous one (the apply's own writes in the member enqueue it at
// once); from the cached status alone it would take every object it just created for one
// it knows nothing about and diff it again. Only this process writes binding status, so
// what it remembers is never older than the cached status. After a restart it is empty and
// the status is all there is. It holds one inventory per live binding (the hub cache holds
// the same); a deleted binding's is dropped.
type appliedRecords struct {
	mu sync.Mutex
	m  map[types.UID][]fleetv1alpha1.InventoryEntry
}

func newAppliedRecords() *appliedRecords {
	return &appliedRecords{m: map[types.UID][]fleetv1alpha1.InventoryEntry{}}
}

// get returns what the last apply of binding uid recorded, nil when nothing.
func (r *appliedRecords) get(uid types.UID) []fleetv1alpha1.InventoryEntry {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.m[uid]
}

// set records the inventory an apply of binding uid produced.
func (r *appliedRecords) set(uid types.UID, inventory []fleetv1alpha1.InventoryEntry) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.m[uid] = inventory
}

// forget drops a deleted binding's records.
func (r *appliedRecords) forget(uid types.UID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.m, uid)
}
