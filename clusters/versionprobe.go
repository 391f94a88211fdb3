package clusters

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"k8s.io/apimachinery/pkg/version"
	"k8s.io/client-go/rest"
)

// maxVersionBody bounds how much of a /version answer is read: a Kubernetes API server's is
// about 300 bytes, and a member that sends more is not one.
const maxVersionBody = 4 << 10

// versionProbe is a member's health probe, GET /version, sent every ProbeInterval. It runs
// on the hub for every member all the time, so it is kept to the request itself (a
// plainGet), and an answer equal to the previous one is not parsed again. Only the prober
// goroutine calls get.
type versionProbe struct {
	plain *plainGet
	// last is the previous successful answer and lastVersion the version parsed from it.
	last        []byte
	lastVersion string
}

// newVersionProbe builds the probe of the member cfg names; client carries the member's
// transport, bounded by the probe timeout.
func newVersionProbe(cfg *rest.Config, client *http.Client) (*versionProbe, error) {
	plain, err := newPlainGet(cfg, client, "version", nil, "application/json")
	if err != nil {
		return nil, err
	}
	return &versionProbe{plain: plain}, nil
}

// get reads the member's /version within ctx and returns its gitVersion only if it looks
// like a Kubernetes version. An answer other than 200 becomes the API status error of its
// code (401 Unauthorized, 403 Forbidden, ...), which classifyProbeError turns into a reason.
func (p *versionProbe) get(ctx context.Context) (string, error) {
	body, err := p.plain.get(ctx, maxVersionBody)
	if errors.Is(err, errAnswerTooLarge) {
		return "", fmt.Errorf("%w (more than %d bytes)", errNotKubernetes, maxVersionBody)
	}
	if err != nil {
		return "", err
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
