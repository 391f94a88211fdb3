package clusters

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"
)

// errAnswerTooLarge is an answer longer than its request allows.
var errAnswerTooLarge = errors.New("the answer is too large")

// plainGet is a GET the hub sends to every member all the time (the health probe, the Node
// count, the MCS discovery): built once (URL, headers) and sent straight over the member's
// shared transport, which adds the bearer token and user agent, instead of through a REST
// client. A REST client adds a rate limiter, retries, response transformation and, for
// discovery, a client built per call; for a small periodic question of every member that
// machinery cost more than the request. Only one goroutine uses a plainGet at a time.
type plainGet struct {
	client *http.Client
	req    *http.Request
}

// newPlainGet builds a GET of apiPath (with query) on the member cfg names, asking for
// accept; client carries the member's transport and the timeout that bounds the call.
func newPlainGet(cfg *rest.Config, client *http.Client, apiPath string, query url.Values, accept string) (*plainGet, error) {
	base, _, err := rest.DefaultServerUrlFor(cfg)
	if err != nil {
		return nil, err
	}
	u := *base
	// A host with a path (a proxy in front of the API server) keeps it, as the REST client does.
	u.Path = path.Join("/", base.Path, apiPath)
	u.RawQuery = query.Encode()
	req, err := http.NewRequest(http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", accept)
	return &plainGet{client: client, req: req}, nil
}

// get sends the request within ctx and returns the body of a 200 answer, at most limit
// bytes: a longer one is an error (the member is not answering as an API server does). Any
// other status becomes the API status error of its code (404 NotFound, 401 Unauthorized,
// 403 Forbidden, ...); its body is never read into the error, since it may quote anything.
func (g *plainGet) get(ctx context.Context, limit int64) ([]byte, error) {
	resp, err := g.client.Do(g.req.WithContext(ctx))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, apierrors.NewGenericServerResponse(resp.StatusCode, http.MethodGet, schema.GroupResource{}, "", "", 0, false)
	}
	if int64(len(body)) > limit {
		return nil, fmt.Errorf("%w: GET %s sent more than %d bytes", errAnswerTooLarge, g.req.URL.Path, limit)
	}
	return body, nil
}
