// Package v1alpha1 holds the Flotilla API (group fleet.flotilla.dev, version v1alpha1):
// MemberCluster, Baseline, BaselineBinding and ExportedService, plus the label, annotation,
// condition and finalizer names that users, controllers and fleetctl share.
//
// This package is the contract. It imports only apimachinery and core API types, never a
// controller package, so fleetctl and other clients can depend on it cheaply.
//
// +kubebuilder:object:generate=true
// +groupName=fleet.flotilla.dev
package v1alpha1
