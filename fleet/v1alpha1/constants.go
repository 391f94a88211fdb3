package v1alpha1

// Defaults shared by the controller and fleetctl.
const (
	// DefaultHubNamespace is where the hub keeps kubeconfig Secrets and Baseline sources.
	DefaultHubNamespace = "flotilla-system"
	// FieldManager is the server-side apply field manager of every write Flotilla makes.
	FieldManager = "flotilla"
	// ManagedByValue is the value of app.kubernetes.io/managed-by on objects Flotilla writes.
	ManagedByValue = "flotilla"
	// DefaultKubeconfigKey is the Secret key holding a kubeconfig (the Cluster API convention).
	DefaultKubeconfigKey = "value"
)

// Labels.
const (
	// LabelManagedBy marks every object Flotilla writes into a member cluster.
	LabelManagedBy = "app.kubernetes.io/managed-by"
	// LabelKubeconfig on a hub Secret ("true") asks the hub to register the cluster it describes.
	LabelKubeconfig = "fleet.flotilla.dev/kubeconfig"
	// LabelRegistration on a MemberCluster says which source created it: fleetctl, secret or cluster-api.
	LabelRegistration = "fleet.flotilla.dev/registration"
	// LabelBaseline names the Baseline that applied an object (member objects, BaselineBindings).
	LabelBaseline = "fleet.flotilla.dev/baseline"
	// LabelCluster names the MemberCluster a hub object is about (BaselineBindings, ExportedServices).
	LabelCluster = "fleet.flotilla.dev/cluster"
	// LabelSourceCluster on a mirror names the member the exported Service lives in.
	LabelSourceCluster = "fleet.flotilla.dev/source-cluster"
	// LabelSourceNamespace on a mirror names the exported Service's namespace.
	LabelSourceNamespace = "fleet.flotilla.dev/source-namespace"
	// LabelSourceName on a mirror names the exported Service.
	LabelSourceName = "fleet.flotilla.dev/source-name"
	// LabelMerged ("true") marks an object that merges every exporter of one namespace/name (the
	// <name>-global Service, a ServiceImport): it carries source-namespace and source-name but no
	// source-cluster, and is written and removed on behalf of all of them.
	LabelMerged = "fleet.flotilla.dev/merged"
	// LabelImport on a member Namespace: "false" refuses mirrors of exported Services; "true"
	// accepts them when the hub imports opt-in (--import-mode=opt-in).
	LabelImport = "fleet.flotilla.dev/import"
)

// Values of LabelRegistration.
const (
	RegistrationFleetctl   = "fleetctl"
	RegistrationSecret     = "secret"
	RegistrationClusterAPI = "cluster-api"
)

// Annotations.
const (
	// AnnotationClusterName on a kubeconfig Secret overrides the MemberCluster name (default: the Secret name).
	AnnotationClusterName = "fleet.flotilla.dev/cluster-name"
	// AnnotationClusterLabels on a kubeconfig Secret gives the MemberCluster labels as k=v,k2=v2.
	AnnotationClusterLabels = "fleet.flotilla.dev/cluster-labels"
	// AnnotationExport ("true") on a member Service exports it to the other members.
	AnnotationExport = "fleet.flotilla.dev/export"
	// AnnotationExportTo narrows an export to the MemberClusters matching this label selector.
	AnnotationExportTo = "fleet.flotilla.dev/export-to"
	// AnnotationAddressMode chooses which addresses of an exported Service are published (see AddressMode).
	AnnotationAddressMode = "fleet.flotilla.dev/address-mode"
	// AnnotationGlobal ("true") on an exported Service adds the merged mirror <name>-global in
	// every member the export reaches: one selectorless Service holding the endpoints of every
	// member that exports a Service of that namespace and name.
	AnnotationGlobal = "fleet.flotilla.dev/global"
	// AnnotationPrune ("true") on a Namespace or CRD manifest allows pruning it; they are kept otherwise.
	AnnotationPrune = "fleet.flotilla.dev/prune"
)

// Short-lived member credentials.
const (
	// AnnotationRenewToken ("true") on a kubeconfig Secret in the hub namespace lets the hub renew
	// the short-lived ServiceAccount token in it (TokenRequest) and write the new one back.
	AnnotationRenewToken = "fleet.flotilla.dev/renew-token"
	// AnnotationRotateCredentials on a MemberCluster asks the hub for a new member token now; its
	// value (a timestamp, by fleetctl rotate-credentials) identifies the request.
	AnnotationRotateCredentials = "fleet.flotilla.dev/rotate-credentials"
	// AnnotationRotatedFor on a kubeconfig Secret is the rotate-credentials request its token was
	// issued for, written with the token, so that a request is served once and seen to be served.
	AnnotationRotatedFor = "fleet.flotilla.dev/rotated-for"
	// ReasonTokenExpired: the member token in the kubeconfig expired; only a person with admin
	// access to the member can issue a new one (the message says how).
	ReasonTokenExpired = "TokenExpired"
	// ReasonCredentialsRenewed (event): the hub replaced a member token with a new one.
	ReasonCredentialsRenewed = "CredentialsRenewed"
	// ReasonCredentialRenewalFailed (event): the hub could not renew a member token; it retries
	// until the token expires.
	ReasonCredentialRenewalFailed = "CredentialRenewalFailed"
)

// Finalizers.
const (
	// FinalizerBaselineCleanup lets a Baseline remove (or orphan) what it applied before it goes away.
	FinalizerBaselineCleanup = "fleet.flotilla.dev/baseline-cleanup"
	// FinalizerMemberCleanup lets a MemberCluster's mirrors and bindings be cleaned up before it goes away.
	FinalizerMemberCleanup = "fleet.flotilla.dev/member-cleanup"
)

// Condition types.
const (
	// ConditionCredentialsValid: the MemberCluster's kubeconfig exists, parses and passes the credential policy.
	ConditionCredentialsValid = "CredentialsValid"
	// ConditionConnected: the hub reaches the member's API server with those credentials.
	ConditionConnected = "Connected"
	// ConditionReady is the summary condition of MemberCluster and Baseline.
	ConditionReady = "Ready"
	// ConditionProgressing: a Baseline revision is still rolling out.
	ConditionProgressing = "Progressing"
	// ConditionStalled: the object cannot make progress without a person acting (kstatus: Failed).
	ConditionStalled = "Stalled"
	// ConditionReconciling: the controller is still working towards the spec (kstatus: InProgress).
	ConditionReconciling = "Reconciling"
	// ConditionApplied: a BaselineBinding's revision is applied in its member.
	ConditionApplied = "Applied"
	// ConditionHealthy: every object a BaselineBinding applied reports healthy (kstatus).
	ConditionHealthy = "Healthy"
	// ConditionDrifted: a member object differs from what the Baseline says.
	ConditionDrifted = "Drifted"
	// ConditionConflict: an object is owned by someone else and was left untouched.
	ConditionConflict = "Conflict"
	// ConditionSynced: an ExportedService's mirrors match its source.
	ConditionSynced = "Synced"
	// ConditionRegistrationConflict: True while another registration source (a Cluster API
	// Cluster) claims this MemberCluster's name and was refused.
	ConditionRegistrationConflict = "RegistrationConflict"
)

// Condition reasons.
const (
	ReasonValid                   = "Valid"
	ReasonSecretNotFound          = "SecretNotFound"
	ReasonKeyNotFound             = "KeyNotFound"
	ReasonInvalidKubeconfig       = "InvalidKubeconfig"
	ReasonExecNotAllowed          = "ExecNotAllowed"
	ReasonAuthProviderNotAllowed  = "AuthProviderNotAllowed"
	ReasonFileReferenceNotAllowed = "FileReferenceNotAllowed"
	ReasonInsecureNotAllowed      = "InsecureNotAllowed"
	ReasonConnected               = "Connected"
	ReasonConnecting              = "Connecting"
	ReasonConnectionFailed        = "ConnectionFailed"
	ReasonUnauthorized            = "Unauthorized"
	ReasonProbeTimeout            = "ProbeTimeout"
	ReasonNotConnected            = "NotConnected"
	ReasonPaused                  = "Paused"
	ReasonHealthy                 = "Healthy"
	ReasonInvalidSource           = "InvalidSource"
	ReasonSourceNotFound          = "SourceNotFound"
	ReasonRollingOut              = "RollingOut"
	ReasonRolloutComplete         = "RolloutComplete"
	ReasonTooManyFailures         = "TooManyFailures"
	ReasonWaitingForRollout       = "WaitingForRollout"
	ReasonApplySucceeded          = "ApplySucceeded"
	ReasonApplyFailed             = "ApplyFailed"
	ReasonUnknownKind             = "UnknownKind"
	ReasonClusterUnreachable      = "ClusterUnreachable"
	ReasonProgressing             = "Progressing"
	ReasonUnhealthy               = "Unhealthy"
	ReasonInSync                  = "InSync"
	ReasonDriftDetected           = "DriftDetected"
	ReasonDriftCorrected          = "DriftCorrected"
	ReasonNoConflict              = "NoConflict"
	ReasonOwnedByOther            = "OwnedByOther"
	ReasonInvalidExport           = "InvalidExport"
	ReasonMirrored                = "Mirrored"
	ReasonNameClash               = "NameClash"
	// ReasonPortConflict: exporters of one namespace/name disagree on a port; the oldest export's wins (MCS).
	ReasonPortConflict = "PortConflict"
	// ReasonTypeConflict: exporters of one namespace/name disagree on headless or not; the oldest export's wins (MCS).
	ReasonTypeConflict = "TypeConflict"
	// ReasonNoConflicts: every exporter of the namespace/name agrees with the merged service (MCS).
	ReasonNoConflicts = "NoConflicts"
	// ReasonBaselineTooLarge: a Baseline renders to more objects or bytes than the hub's limits
	// (--max-baseline-objects, --max-baseline-bytes); nothing of it is applied.
	ReasonBaselineTooLarge = "BaselineTooLarge"
	// ReasonImportDisabled: the target Namespace is labelled fleet.flotilla.dev/import: "false".
	ReasonImportDisabled = "ImportDisabled"
	// ReasonImportNotEnabled: the hub imports opt-in and the target Namespace is not labelled fleet.flotilla.dev/import: "true".
	ReasonImportNotEnabled = "ImportNotEnabled"
	// ReasonSecretNamespaceNotAllowed: kubeconfigSecretRef names a namespace the hub does not read kubeconfigs from.
	ReasonSecretNamespaceNotAllowed = "SecretNamespaceNotAllowed"
	// ReasonSecretReadFailed: the hub could not read the kubeconfig Secret (not NotFound); retried with backoff.
	ReasonSecretReadFailed = "SecretReadFailed"
	// ReasonHTTPNotAllowed: the member's server URL is not https (the token would travel in clear).
	ReasonHTTPNotAllowed = "HTTPNotAllowed"
	// ReasonProxyNotAllowed: the kubeconfig sets proxy-url; the hub never connects through one a kubeconfig names.
	ReasonProxyNotAllowed = "ProxyNotAllowed"
	// ReasonEndpointNotAllowed: the member's address is link-local, cloud metadata or (unless allowed) loopback.
	ReasonEndpointNotAllowed = "EndpointNotAllowed"
	// ReasonForbidden: the member authenticated the hub but refused the probe (403).
	ReasonForbidden = "Forbidden"
	// ReasonTLSError: the TLS handshake with the member failed (unknown authority, wrong host name, not TLS).
	ReasonTLSError = "TLSError"
	// ReasonServerError: the member answered the probe with an HTTP 5xx status.
	ReasonServerError = "ServerError"
	// ReasonNotKubernetes: the member answered, but not as a Kubernetes API server does.
	ReasonNotKubernetes = "NotKubernetes"
	// ReasonConnectionRefused: nothing listens at the member's address.
	ReasonConnectionRefused = "ConnectionRefused"
	// ReasonHostNotFound: the member's host name does not resolve.
	ReasonHostNotFound = "HostNotFound"
	// ReasonClusterNameTaken: a registration source wants a MemberCluster name that is already in use.
	ReasonClusterNameTaken = "ClusterNameTaken"
	// ReasonRetrying: the last reconcile failed for a reason that may pass; it is retried with backoff.
	ReasonRetrying = "Retrying"
)

// Leaving the fleet and Cluster API moves (MemberCluster reasons, events and annotations).
const (
	// ReasonLeaving: the MemberCluster is being deleted; the hub is removing what it wrote in the member.
	ReasonLeaving = "Leaving"
	// ReasonLeft (event): everything Flotilla wrote for the member was removed per deletionPolicy; the connection is closed.
	ReasonLeft = "Left"
	// ReasonCleanupIncomplete (event, condition): the member left before its clean-up finished; the message lists what was left behind.
	ReasonCleanupIncomplete = "CleanupIncomplete"
	// ReasonClusterMoving (event): a Cluster API Cluster is paused or being moved by clusterctl; its MemberCluster is kept.
	ReasonClusterMoving = "ClusterMoving"
	// AnnotationClusterAPIMoving on a MemberCluster records that its Cluster API Cluster was paused or being
	// moved when last seen, so that the Cluster's disappearance is not taken as an unregistration.
	AnnotationClusterAPIMoving = "fleet.flotilla.dev/cluster-api-moving"
	// AnnotationClusterctlMove is set by clusterctl on a Cluster it is moving to another management cluster.
	AnnotationClusterctlMove = "clusterctl.cluster.x-k8s.io/move"
	// AnnotationClusterctlDeleteForMove is set by clusterctl on the source objects it deletes after a move.
	AnnotationClusterctlDeleteForMove = "clusterctl.cluster.x-k8s.io/delete-for-move"
	// AnnotationClusterAPIPaused is Cluster API's paused annotation (cluster.x-k8s.io/paused).
	AnnotationClusterAPIPaused = "cluster.x-k8s.io/paused"
)

// The running controller's version, for `fleetctl version`.
const (
	// ControllerVersionLease is the Lease in the hub namespace where the fleet-controller that
	// acts on the fleet (the leader) records its build when it starts: holderIdentity names the
	// instance, acquireTime when it started leading, and the annotations below its build.
	ControllerVersionLease = "fleet-controller-version"
	// AnnotationVersion on ControllerVersionLease is the controller's version (e.g. v0.2.0).
	AnnotationVersion = "fleet.flotilla.dev/version"
	// AnnotationGitCommit on ControllerVersionLease is the commit the controller was built from.
	AnnotationGitCommit = "fleet.flotilla.dev/git-commit"
)
