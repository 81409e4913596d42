package harness

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// BusyboxPath is the static busybox (Debian's busybox-static) that test images are made of.
const BusyboxPath = "/bin/busybox"

// DefaultPath is the PATH an image gets when its ImageConfig.Env sets none.
const DefaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// imageTime is the time of every file and of the image config, so that the same ImageConfig
// always gives the same digest.
var imageTime = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// ImageConfig describes a test image: its OCI config and extra files.
type ImageConfig struct {
	Entrypoint, Cmd, Env []string
	WorkingDir, User     string
	StopSignal           string // STOPSIGNAL; empty: none
	// Files are extra files, absolute path -> content. A file whose content starts with "#!"
	// is executable (0755), others are 0644; missing parent directories are created (0755).
	// A file replaces a busybox applet link of the same path.
	Files map[string]string
}

// DemoWebConfig is the demo web image: busybox httpd in the foreground on port 80, serving
// /var/www/index.html, which says "hello from orch task <hostname>"; it prints one line to
// stdout when it starts. orch-testimage -demo-web pushes it.
func DemoWebConfig() ImageConfig {
	return ImageConfig{
		Entrypoint: []string{"/bin/demo-web"},
		WorkingDir: "/var/www",
		Files: map[string]string{
			"/bin/demo-web": `#!/bin/sh
echo "hello from orch task $(hostname)" > /var/www/index.html
echo "demo-web: serving /var/www on port 80 as $(hostname)"
exec httpd -f -v -p 80 -h /var/www
`,
		},
	}
}

// PushImage builds a single-layer linux/amd64 OCI image from busybox-static with cfg as its
// config and pushes it over plain HTTP to the registry at registryAddr as repoTag (e.g.
// "demo/web:latest"). It returns the full reference, e.g. "127.0.0.1:5000/demo/web:latest".
//
// The layer holds /bin/busybox with a /bin symlink for every applet of `busybox --list`,
// /etc/passwd (root 0, nobody 65534), /etc/group, /root, /tmp (1777), /var/www and cfg.Files.
func PushImage(registryAddr, repoTag string, cfg ImageConfig) (string, error) {
	full := registryAddr + "/" + repoTag
	ref, err := name.ParseReference(full, name.Insecure)
	if err != nil {
		return "", fmt.Errorf("image reference %q: %w", full, err)
	}
	img, err := BuildImage(cfg)
	if err != nil {
		return "", fmt.Errorf("build image %s: %w", full, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	transport := &http.Transport{
		Proxy:               nil, // the registry is on loopback; ignore HTTP(S)_PROXY
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		TLSHandshakeTimeout: 5 * time.Second,
	}
	if err := remote.Write(ref, img, remote.WithContext(ctx), remote.WithTransport(transport)); err != nil {
		return "", fmt.Errorf("push image %s: %w", full, err)
	}
	return ref.Name(), nil
}

// BuildImage builds the image that PushImage pushes, without pushing it.
func BuildImage(cfg ImageConfig) (v1.Image, error) {
	layerTar, err := buildLayer(cfg.Files)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, fmt.Errorf("layer: %w", err)
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.AppendLayers(img, layer)
	if err != nil {
		return nil, fmt.Errorf("append layer: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("config file: %w", err)
	}
	cf = cf.DeepCopy()
	cf.Architecture, cf.OS = "amd64", "linux"
	cf.Created = v1.Time{Time: imageTime}
	cf.History = []v1.History{{Created: v1.Time{Time: imageTime}, CreatedBy: "orch test harness: busybox-static"}}
	env := append([]string(nil), cfg.Env...)
	if !hasEnv(env, "PATH") {
		env = append([]string{DefaultPath}, env...)
	}
	cf.Config = v1.Config{
		Entrypoint: cfg.Entrypoint,
		Cmd:        cfg.Cmd,
		Env:        env,
		WorkingDir: cfg.WorkingDir,
		User:       cfg.User,
		StopSignal: cfg.StopSignal,
	}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("set config: %w", err)
	}
	return img, nil
}

func hasEnv(env []string, key string) bool {
	for _, kv := range env {
		if strings.HasPrefix(kv, key+"=") {
			return true
		}
	}
	return false
}

// busybox is read once per process: its bytes and its applet list.
var busybox struct {
	once    sync.Once
	data    []byte
	applets []string
	err     error
}

func loadBusybox() ([]byte, []string, error) {
	busybox.once.Do(func() {
		data, err := os.ReadFile(BusyboxPath)
		if err != nil {
			busybox.err = fmt.Errorf("read %s (install busybox-static): %w", BusyboxPath, err)
			return
		}
		out, err := exec.Command(BusyboxPath, "--list").Output()
		if err != nil {
			busybox.err = fmt.Errorf("%s --list: %w", BusyboxPath, err)
			return
		}
		for _, a := range strings.Fields(string(out)) {
			if a != "busybox" && !strings.Contains(a, "/") {
				busybox.applets = append(busybox.applets, a)
			}
		}
		busybox.data = data
	})
	return busybox.data, busybox.applets, busybox.err
}

// tarEntry is one entry of the layer; a symlink when link != "".
type tarEntry struct {
	mode    int64
	dir     bool
	link    string
	content []byte
}

// buildLayer writes the uncompressed layer tar: deterministic order, times and owners.
func buildLayer(files map[string]string) ([]byte, error) {
	bb, applets, err := loadBusybox()
	if err != nil {
		return nil, err
	}
	entries := map[string]tarEntry{
		"bin":         {mode: 0o755, dir: true},
		"etc":         {mode: 0o755, dir: true},
		"root":        {mode: 0o700, dir: true},
		"tmp":         {mode: 0o1777, dir: true},
		"var":         {mode: 0o755, dir: true},
		"var/www":     {mode: 0o755, dir: true},
		"bin/busybox": {mode: 0o755, content: bb},
		"etc/passwd": {mode: 0o644, content: []byte(
			"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")},
		"etc/group": {mode: 0o644, content: []byte("root:x:0:\nnogroup:x:65534:\n")},
	}
	for _, a := range applets {
		entries["bin/"+a] = tarEntry{mode: 0o777, link: "busybox"}
	}
	for p, content := range files {
		clean := strings.TrimPrefix(path.Clean("/"+p), "/")
		if !strings.HasPrefix(p, "/") || clean == "" {
			return nil, fmt.Errorf("image file %q: want an absolute file path", p)
		}
		mode := int64(0o644)
		if strings.HasPrefix(content, "#!") {
			mode = 0o755
		}
		entries[clean] = tarEntry{mode: mode, content: []byte(content)}
		for d := path.Dir(clean); d != "."; d = path.Dir(d) {
			if e, ok := entries[d]; ok && !e.dir {
				return nil, fmt.Errorf("image file %q: %s is a file, not a directory", p, d)
			} else if !ok {
				entries[d] = tarEntry{mode: 0o755, dir: true}
			}
		}
	}
	names := make([]string, 0, len(entries))
	for n := range entries {
		names = append(names, n)
	}
	sort.Strings(names) // a parent sorts before its children

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, n := range names {
		e := entries[n]
		hdr := &tar.Header{
			Name:    n,
			Mode:    e.mode,
			ModTime: imageTime,
			Uname:   "root",
			Gname:   "root",
			Format:  tar.FormatPAX,
		}
		switch {
		case e.dir:
			hdr.Typeflag, hdr.Name = tar.TypeDir, n+"/"
		case e.link != "":
			hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, e.link
		default:
			hdr.Typeflag, hdr.Size = tar.TypeReg, int64(len(e.content))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("tar %s: %w", n, err)
		}
		if hdr.Typeflag == tar.TypeReg {
			if _, err := tw.Write(e.content); err != nil {
				return nil, fmt.Errorf("tar %s: %w", n, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("tar: %w", err)
	}
	return buf.Bytes(), nil
}
