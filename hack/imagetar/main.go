// Command imagetar writes the fleet-controller image as a tarball without a container
// engine or a registry: one layer holding the static binary, as the Dockerfile's FROM scratch
// image does. `make release` uses it so that the release names its image by a digest known
// before any push, and so that the same binary always makes the same image.
//
// The tarball holds the image twice over, in the layouts of both loaders: an OCI image
// layout (oci-layout, index.json, blobs/) that containerd (`ctr images import`, `kind load
// image-archive`) imports keeping the manifest's digest, so a Pod image `repo@sha256:<digest>`
// resolves on the node without a pull; and docker's manifest.json, so `docker load` works
// too (docker names the image by its config digest, the image ID).
//
// It prints the manifest digest (sha256:...) on stdout and the image ID on stderr.
//
// It is a development program: no shipped binary imports it.
package main

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// Media types of an OCI image; the layer is an uncompressed tar (the binary does not
// compress enough to be worth a non-reproducible gzip).
const (
	mediaIndex    = "application/vnd.oci.image.index.v1+json"
	mediaManifest = "application/vnd.oci.image.manifest.v1+json"
	mediaConfig   = "application/vnd.oci.image.config.v1+json"
	mediaLayer    = "application/vnd.oci.image.layer.v1.tar"
)

type descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

type imageConfig struct {
	Created      string `json:"created"`
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
	Config       struct {
		User       string            `json:"User"`
		Entrypoint []string          `json:"Entrypoint"`
		Labels     map[string]string `json:"Labels"`
	} `json:"config"`
	RootFS struct {
		Type    string   `json:"type"`
		DiffIDs []string `json:"diff_ids"`
	} `json:"rootfs"`
}

type manifest struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType"`
	Config        descriptor   `json:"config"`
	Layers        []descriptor `json:"layers"`
}

type index struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType"`
	Manifests     []descriptor `json:"manifests"`
}

// dockerManifest is one entry of docker save's manifest.json.
type dockerManifest struct {
	Config   string
	RepoTags []string
	Layers   []string
}

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "imagetar:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("imagetar", flag.ContinueOnError)
	binary := fs.String("binary", "", "The static linux fleet-controller binary.")
	image := fs.String("image", "", "Image name with tag, e.g. flotilla/fleet-controller:v0.2.0.")
	version := fs.String("version", "", "Version for the image's org.opencontainers.image.version label.")
	arch := fs.String("arch", "amd64", "GOARCH of the binary.")
	out := fs.String("out", "", "Tarball to write.")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *binary == "" || *image == "" || *out == "" || !strings.Contains(*image, ":") {
		return fmt.Errorf("--binary, --image repo:tag and --out are required")
	}
	bin, err := os.ReadFile(*binary)
	if err != nil {
		return err
	}
	// Every timestamp is SOURCE_DATE_EPOCH (default: the epoch), so the digest depends on
	// the binary and the flags only.
	epoch := time.Unix(0, 0).UTC()
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return fmt.Errorf("SOURCE_DATE_EPOCH: %w", err)
		}
		epoch = time.Unix(n, 0).UTC()
	}

	layer, err := tarOf(epoch, file{name: "fleet-controller", mode: 0o755, data: bin})
	if err != nil {
		return err
	}
	var cfg imageConfig
	cfg.Created = epoch.Format(time.RFC3339)
	cfg.Architecture, cfg.OS = *arch, "linux"
	cfg.Config.User = "65532:65532" // numeric: the kubelet checks runAsNonRoot without /etc/passwd
	cfg.Config.Entrypoint = []string{"/fleet-controller"}
	cfg.Config.Labels = map[string]string{
		"org.opencontainers.image.title":   "fleet-controller",
		"org.opencontainers.image.source":  "https://github.com/flotilla-dev/flotilla",
		"org.opencontainers.image.version": *version,
	}
	cfg.RootFS.Type = "layers"
	cfg.RootFS.DiffIDs = []string{digest(layer)}
	cfgJSON, err := json.Marshal(cfg)
	if err != nil {
		return err
	}
	m := manifest{
		SchemaVersion: 2, MediaType: mediaManifest,
		Config: descriptor{MediaType: mediaConfig, Digest: digest(cfgJSON), Size: int64(len(cfgJSON))},
		Layers: []descriptor{{MediaType: mediaLayer, Digest: digest(layer), Size: int64(len(layer))}},
	}
	manifestJSON, err := json.Marshal(m)
	if err != nil {
		return err
	}
	tag := (*image)[strings.LastIndex(*image, ":")+1:]
	idx := index{SchemaVersion: 2, MediaType: mediaIndex, Manifests: []descriptor{{
		MediaType: mediaManifest, Digest: digest(manifestJSON), Size: int64(len(manifestJSON)),
		Annotations: map[string]string{
			// containerd names the imported image by this; OCI tools by the tag.
			"io.containerd.image.name":          fullName(*image),
			"org.opencontainers.image.ref.name": tag,
		},
	}}}
	indexJSON, err := json.Marshal(idx)
	if err != nil {
		return err
	}
	dockerJSON, err := json.Marshal([]dockerManifest{{
		Config: blobPath(cfgJSON), RepoTags: []string{*image}, Layers: []string{blobPath(layer)},
	}})
	if err != nil {
		return err
	}
	tarball, err := tarOf(epoch,
		file{name: "oci-layout", mode: 0o644, data: []byte(`{"imageLayoutVersion":"1.0.0"}`)},
		file{name: "index.json", mode: 0o644, data: indexJSON},
		file{name: "manifest.json", mode: 0o644, data: dockerJSON},
		file{name: "blobs/", dir: true},
		file{name: "blobs/sha256/", dir: true},
		file{name: blobPath(manifestJSON), mode: 0o644, data: manifestJSON},
		file{name: blobPath(cfgJSON), mode: 0o644, data: cfgJSON},
		file{name: blobPath(layer), mode: 0o644, data: layer},
	)
	if err != nil {
		return err
	}
	if err := os.WriteFile(*out, tarball, 0o644); err != nil {
		return err
	}
	fmt.Println(digest(manifestJSON))
	fmt.Fprintf(os.Stderr, "wrote %s: image %s, manifest %s, image ID %s\n", *out, *image, digest(manifestJSON), digest(cfgJSON))
	return nil
}

type file struct {
	name string
	mode int64
	dir  bool
	data []byte
}

// tarOf is a tar of files in the order given, owned by root, every time epoch.
func tarOf(epoch time.Time, files ...file) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		h := &tar.Header{Name: f.name, Mode: f.mode, ModTime: epoch, Format: tar.FormatPAX, Typeflag: tar.TypeReg, Size: int64(len(f.data))}
		if f.dir {
			h.Typeflag, h.Mode, h.Size = tar.TypeDir, 0o755, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func digest(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

func blobPath(b []byte) string { return "blobs/sha256/" + strings.TrimPrefix(digest(b), "sha256:") }

// fullName is the image name as containerd stores it: docker.io/ and library/ spelled out.
func fullName(image string) string {
	first, _, found := strings.Cut(image, "/")
	if !found {
		return "docker.io/library/" + image
	}
	if strings.ContainsAny(first, ".:") || first == "localhost" {
		return image
	}
	return "docker.io/" + image
}
