package clusters

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/version"
	"k8s.io/client-go/rest"
)

// maxVersionBody bounds how much of a /version answer is read: a Kubernetes API server's is
// about 300 bytes, and a member that sends more is not one.
const maxVersionBody = 4 << 10

// versionProbe is a member's health probe, GET /version, sent every ProbeInterval. It runs
// on the hub for every member all the time, so it is kept to the request itself: the
// request is built once (URL, headers), sent straight over the member's shared transport
// (which adds the bearer token and user agent) instead of through a REST client (rate
// limiter, retry and response-transformation machinery per call), and an answer equal to
// the previous one is not parsed again. Only the prober goroutine calls get.
type versionProbe struct {
	client *http.Client
	req    *http.Request
	// last is the previous successful answer and lastVersion the version parsed from it.
	last        []byte
	lastVersion string
}

// newVersionProbe builds the probe of the member cfg names; client carries the member's
// transport, bounded by the probe timeout.
func newVersionProbe(cfg *rest.Config, client *http.Client) (*versionProbe, error) {
	base, _, err := rest.DefaultServerUrlFor(cfg)
	if err != nil {
		return nil, err
	}
	u := *base
	// A host with a path (a proxy in front of the API server) keeps it, as the REST client does.
	u.Path = path.Join("/", base.Path, "version")
	req, err := http.NewRequest(http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	return &versionProbe{client: client, req: req}, nil
}

// get reads the member's /version within ctx and returns its gitVersion only if it looks
// like a Kubernetes version. An answer other than 200 becomes the API status error of its
// code (401 Unauthorized, 403 Forbidden, ...), which classifyProbeError turns into a reason;
// its body is never read into the error.
func (p *versionProbe) get(ctx context.Context) (string, error) {
	resp, err := p.client.Do(p.req.WithContext(ctx))
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxVersionBody+1))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", apierrors.NewGenericServerResponse(resp.StatusCode, http.MethodGet, schema.GroupResource{}, "", "", 0, false)
	}
	if bytes.Equal(body, p.last) {
		return p.lastVersion, nil
	}
	v, err := parseVersion(body)
	if err != nil {
		return "", err
	}
	p.last, p.lastVersion = body, v
	return v, nil
}

// parseVersion returns the gitVersion of a /version answer, or errNotKubernetes.
func parseVersion(body []byte) (string, error) {
	if len(body) > maxVersionBody {
		return "", fmt.Errorf("%w (more than %d bytes)", errNotKubernetes, maxVersionBody)
	}
	var info version.Info
	if err := json.Unmarshal(body, &info); err != nil {
		return "", errNotKubernetes
	}
	if len(info.GitVersion) > maxVersionLen || !gitVersionPattern.MatchString(info.GitVersion) {
		return "", errNotKubernetes
	}
	return info.GitVersion, nil
}
