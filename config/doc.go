// Package config holds no Go code: it is the kustomize install of Flotilla — crd (generated
// CRDs), rbac (hub RBAC generated from the +kubebuilder:rbac markers, and its bindings),
// manager (the fleet-controller Deployment and metrics Service), default (all of them, what
// `make deploy` applies) and samples. Its tests render config/default with the pinned
// kubectl and apply it to a real API server, so a broken manifest fails `make test`.
package config
