package clusters

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"

	"k8s.io/client-go/rest"
)

// maxNodePage bounds the answer of the Node count's one request: the metadata of one Node
// (managed fields included, a few KiB) and the list's own.
const maxNodePage = 1 << 20

// maxNodeListPage bounds one page of 500 Nodes' metadata, for a server that sends no count.
const maxNodeListPage = 64 << 20

// nodeCount counts a member's Nodes (status.nodeCount) with one small request: the
// metadata of the first Node (limit=1) and the number of Nodes after it, which the API
// server sends as metadata.remainingItemCount. Listing every Node instead, in pages, cost
// the hub a decoded page per 500 Nodes of every member once a minute, for one number.
// Only the prober goroutine calls get.
type nodeCount struct {
	cfg   *rest.Config
	hc    *http.Client
	first *plainGet
}

// nodeListAccept asks for the Nodes' metadata only: the count needs no more.
const nodeListAccept = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"

func newNodeCount(cfg *rest.Config, hc *http.Client) (*nodeCount, error) {
	first, err := newPlainGet(cfg, hc, "api/v1/nodes", url.Values{"limit": {"1"}}, nodeListAccept)
	if err != nil {
		return nil, err
	}
	return &nodeCount{cfg: cfg, hc: hc, first: first}, nil
}

// nodePage is the part of a list answer the count reads.
type nodePage struct {
	Metadata struct {
		Continue           string `json:"continue"`
		RemainingItemCount *int64 `json:"remainingItemCount"`
	} `json:"metadata"`
	Items []json.RawMessage `json:"items"`
}

// get counts the member's Nodes within ctx.
func (n *nodeCount) get(ctx context.Context) (int32, error) {
	page, err := readNodePage(ctx, n.first, maxNodePage)
	if err != nil {
		return 0, err
	}
	count := int64(len(page.Items))
	if page.Metadata.Continue != "" && page.Metadata.RemainingItemCount != nil {
		return int32(count + *page.Metadata.RemainingItemCount), nil
	}
	// More Nodes and no count of them (a server that does not send it): page through them.
	for cont := page.Metadata.Continue; cont != ""; cont = page.Metadata.Continue {
		next, err := newPlainGet(n.cfg, n.hc, "api/v1/nodes", url.Values{"limit": {"500"}, "continue": {cont}}, nodeListAccept)
		if err != nil {
			return 0, err
		}
		if page, err = readNodePage(ctx, next, maxNodeListPage); err != nil {
			return 0, err
		}
		count += int64(len(page.Items))
	}
	return int32(count), nil
}

func readNodePage(ctx context.Context, get *plainGet, limit int64) (*nodePage, error) {
	body, err := get.get(ctx, limit)
	if err != nil {
		return nil, err
	}
	page := &nodePage{}
	if err := json.Unmarshal(body, page); err != nil {
		return nil, fmt.Errorf("list Nodes: %w", err)
	}
	return page, nil
}
