package localfleet

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// The audit log (Options.AuditLog) answers "did anyone write to this cluster?" at the API
// server itself. Watching resourceVersion cannot: a server-side apply that changes nothing
// leaves it alone, yet it is a request the member had to serve.

// auditPolicy logs every request once, at Metadata level (who, verb, object; never bodies, so
// no Secret data lands in the file). Only the RequestReceived stage is kept: it is written,
// synchronously (the log backend's default blocking mode), before the request is handled, so a
// request is in the log by the time its client has the answer and a count never lags. It also
// means a request is counted whether or not it then succeeds: a write refused by RBAC or a
// conflict is still a write attempted.
const auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [ResponseStarted, ResponseComplete, Panic]
rules:
- level: Metadata
`

// credentialIDKey is the user extra under which API servers name the credential a request
// authenticated with.
const credentialIDKey = "authentication.kubernetes.io/credential-id"

// mutatingVerbs are the audit verbs that change state (server-side apply is a patch).
var mutatingVerbs = []string{"create", "update", "patch", "delete", "deletecollection"}

func (c *ControlPlane) auditPolicyPath() string { return filepath.Join(c.Dir, "audit-policy.yaml") }

// auditLogPath is not *.log: the process logs are tailed when a test fails, this one is noise.
func (c *ControlPlane) auditLogPath() string { return filepath.Join(c.Dir, "audit.jsonl") }

func (c *ControlPlane) writeAuditPolicy() error {
	return os.WriteFile(c.auditPolicyPath(), []byte(auditPolicy), 0o600)
}

func (c *ControlPlane) auditArgs() []string {
	if !c.opts.auditLog {
		return nil
	}
	return []string{
		"--audit-policy-file=" + c.auditPolicyPath(),
		"--audit-log-path=" + c.auditLogPath(),
		"--audit-log-format=json",
		"--audit-log-maxsize=4096", // MB; a rotation would invalidate the offsets of AuditMark
	}
}

// AuditMark is a position in one cluster's audit log; Writes reports what came after it.
type AuditMark struct {
	cluster string
	offset  int64
}

// AuditedRequest is one request in a cluster's audit log.
type AuditedRequest struct {
	// User is the authenticated user name (impersonation is not resolved at this stage).
	User string
	// Verb is the Kubernetes verb: create, update, patch (also server-side apply), delete ...
	Verb string
	// Resource, Subresource, Namespace and Name say what was addressed; Name is empty for
	// a create or a collection.
	APIGroup, Resource, Subresource, Namespace, Name string
	// DryRun says the request asked for dryRun=All: served, validated, never persisted (a
	// server-side apply diff is one).
	DryRun bool
	// CredentialID identifies the credential the request authenticated with, as the API
	// server names it (a ServiceAccount token's "JTI=<jti>"); empty when it names none.
	CredentialID string
}

func (r AuditedRequest) String() string {
	res := r.Resource
	if r.APIGroup != "" {
		res += "." + r.APIGroup
	}
	if r.Subresource != "" {
		res += "/" + r.Subresource
	}
	obj := r.Name
	if r.Namespace != "" {
		obj = r.Namespace + "/" + r.Name
	}
	return fmt.Sprintf("%s %s %s %s", r.User, r.Verb, res, obj)
}

// AuditMark returns the current end of the cluster's audit log. It fails when the fleet was
// started without Options.AuditLog.
func (c *ControlPlane) AuditMark() (AuditMark, error) {
	if !c.opts.auditLog {
		return AuditMark{}, fmt.Errorf("cluster %q has no audit log: start the fleet with Options.AuditLog", c.Name)
	}
	fi, err := os.Stat(c.auditLogPath())
	if os.IsNotExist(err) {
		return AuditMark{cluster: c.Name}, nil
	}
	if err != nil {
		return AuditMark{}, fmt.Errorf("cluster %q: audit log: %w", c.Name, err)
	}
	return AuditMark{cluster: c.Name, offset: fi.Size()}, nil
}

// Writes returns the mutating requests (create, update, patch, delete, deletecollection) made
// since mark by any of users; with no users, by every user but the cluster's own components
// (user names starting with "system:", except ServiceAccounts). Its length is the number of
// writes: zero proves that nobody in users wrote, even a server-side apply that changed nothing.
func (c *ControlPlane) Writes(since AuditMark, users ...string) ([]AuditedRequest, error) {
	if since.cluster != c.Name {
		return nil, fmt.Errorf("cluster %q: audit mark belongs to cluster %q", c.Name, since.cluster)
	}
	all, err := c.auditedSince(since.offset)
	if err != nil {
		return nil, err
	}
	var writes []AuditedRequest
	for _, r := range all {
		if slices.Contains(mutatingVerbs, r.Verb) && counted(r.User, users) {
			writes = append(writes, r)
		}
	}
	return writes, nil
}

// Requests returns every request (reads too) made since mark by user.
func (c *ControlPlane) Requests(since AuditMark, user string) ([]AuditedRequest, error) {
	if since.cluster != c.Name {
		return nil, fmt.Errorf("cluster %q: audit mark belongs to cluster %q", c.Name, since.cluster)
	}
	all, err := c.auditedSince(since.offset)
	if err != nil {
		return nil, err
	}
	var out []AuditedRequest
	for _, r := range all {
		if r.User == user {
			out = append(out, r)
		}
	}
	return out, nil
}

// counted says whether Writes counts a request of user: one of users, or with no users, anyone
// but the cluster's own components.
func counted(user string, users []string) bool {
	if len(users) > 0 {
		return slices.Contains(users, user)
	}
	systemComponent := strings.HasPrefix(user, "system:") && !strings.HasPrefix(user, "system:serviceaccount:")
	return !systemComponent
}

// auditEvent is the part of an audit.k8s.io/v1 Event that Writes reads.
type auditEvent struct {
	Verb       string `json:"verb"`
	RequestURI string `json:"requestURI"`
	User       struct {
		Username string              `json:"username"`
		Extra    map[string][]string `json:"extra"`
	} `json:"user"`
	ObjectRef *struct {
		APIGroup    string `json:"apiGroup"`
		Resource    string `json:"resource"`
		Subresource string `json:"subresource"`
		Namespace   string `json:"namespace"`
		Name        string `json:"name"`
	} `json:"objectRef"`
}

// auditedSince parses the complete lines of the audit log from offset on; a line being written
// right now is left for the next call.
func (c *ControlPlane) auditedSince(offset int64) ([]AuditedRequest, error) {
	f, err := os.Open(c.auditLogPath())
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("cluster %q: audit log: %w", c.Name, err)
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return nil, fmt.Errorf("cluster %q: audit log: %w", c.Name, err)
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return nil, fmt.Errorf("cluster %q: audit log: %w", c.Name, err)
	}
	if i := bytes.LastIndexByte(data, '\n'); i >= 0 {
		data = data[:i+1]
	} else {
		data = nil
	}
	var out []AuditedRequest
	for line := range bytes.Lines(data) {
		var ev auditEvent
		if err := json.Unmarshal(line, &ev); err != nil {
			return nil, fmt.Errorf("cluster %q: audit log line %.200q: %w", c.Name, line, err)
		}
		r := AuditedRequest{User: ev.User.Username, Verb: ev.Verb, DryRun: isDryRun(ev.RequestURI)}
		if id := ev.User.Extra[credentialIDKey]; len(id) > 0 {
			r.CredentialID = id[0]
		}
		if o := ev.ObjectRef; o != nil {
			r.APIGroup, r.Resource, r.Subresource, r.Namespace, r.Name = o.APIGroup, o.Resource, o.Subresource, o.Namespace, o.Name
		}
		out = append(out, r)
	}
	return out, nil
}

// isDryRun reports whether a request URI asks for a dry run (dryRun=All).
func isDryRun(uri string) bool {
	u, err := url.ParseRequestURI(uri)
	return err == nil && len(u.Query()["dryRun"]) > 0
}
