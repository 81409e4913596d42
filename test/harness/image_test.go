package harness

import (
	"archive/tar"
	"bytes"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
)

func TestBuildImageDeterministic(t *testing.T) {
	if _, err := os.Stat(BusyboxPath); err != nil {
		t.Skipf("skipping: %s not installed (Debian package busybox-static)", BusyboxPath)
	}
	digest := func(cfg ImageConfig) string {
		t.Helper()
		img, err := BuildImage(cfg)
		if err != nil {
			t.Fatal(err)
		}
		d, err := img.Digest()
		if err != nil {
			t.Fatal(err)
		}
		return d.String()
	}
	base := ImageConfig{Cmd: []string{"sh"}, Files: map[string]string{"/a/b.txt": "x", "/c": "y"}}
	for _, tc := range []struct {
		name  string
		other ImageConfig
		same  bool
	}{
		{name: "same config", other: ImageConfig{Cmd: []string{"sh"}, Files: map[string]string{"/c": "y", "/a/b.txt": "x"}}, same: true},
		{name: "other cmd", other: ImageConfig{Cmd: []string{"true"}, Files: base.Files}},
		{name: "other file", other: ImageConfig{Cmd: []string{"sh"}, Files: map[string]string{"/a/b.txt": "z", "/c": "y"}}},
		{name: "other user", other: ImageConfig{Cmd: []string{"sh"}, User: "nobody", Files: base.Files}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := digest(base) == digest(tc.other); got != tc.same {
				t.Errorf("same digest = %v, want %v", got, tc.same)
			}
		})
	}
}

func TestBuildImageContents(t *testing.T) {
	if _, err := os.Stat(BusyboxPath); err != nil {
		t.Skipf("skipping: %s not installed (Debian package busybox-static)", BusyboxPath)
	}
	img, err := BuildImage(ImageConfig{
		Entrypoint: []string{"/bin/run"},
		Env:        []string{"A=1"},
		WorkingDir: "/var/www",
		User:       "nobody",
		Files:      map[string]string{"/bin/run": "#!/bin/sh\necho hi\n", "/var/www/index.html": "hi", "/bin/sh": "#!/bin/true\n"},
	})
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.Architecture != "amd64" || cf.OS != "linux" {
		t.Errorf("platform = %s/%s, want linux/amd64", cf.OS, cf.Architecture)
	}
	if got := strings.Join(cf.Config.Env, " "); got != DefaultPath+" A=1" {
		t.Errorf("env = %q", got)
	}
	if cf.Config.User != "nobody" || cf.Config.WorkingDir != "/var/www" || cf.Config.Entrypoint[0] != "/bin/run" {
		t.Errorf("config = %+v", cf.Config)
	}
	mt, _ := img.MediaType()
	if mt != "application/vnd.oci.image.manifest.v1+json" {
		t.Errorf("media type = %s, want OCI", mt)
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers = %d, %v; want 1", len(layers), err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	got := map[string]*tar.Header{}
	contents := map[string]string{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got[strings.TrimSuffix(h.Name, "/")] = h
		b, _ := io.ReadAll(tr)
		contents[strings.TrimSuffix(h.Name, "/")] = string(b)
	}
	out, err := exec.Command(BusyboxPath, "--list").Output()
	if err != nil {
		t.Fatal(err)
	}
	applets := strings.Fields(string(out))
	for _, tc := range []struct {
		path     string
		typeflag byte
		mode     int64
		content  string // checked when not ""
		link     string
	}{
		{path: "bin/busybox", typeflag: tar.TypeReg, mode: 0o755},
		{path: "bin/ls", typeflag: tar.TypeSymlink, mode: 0o777, link: "busybox"},
		{path: "bin/httpd", typeflag: tar.TypeSymlink, mode: 0o777, link: "busybox"},
		{path: "bin/sh", typeflag: tar.TypeReg, mode: 0o755, content: "#!/bin/true\n"}, // Files win over applets
		{path: "bin/run", typeflag: tar.TypeReg, mode: 0o755, content: "#!/bin/sh\necho hi\n"},
		{path: "tmp", typeflag: tar.TypeDir, mode: 0o1777},
		{path: "var/www", typeflag: tar.TypeDir, mode: 0o755},
		{path: "var/www/index.html", typeflag: tar.TypeReg, mode: 0o644, content: "hi"},
		{path: "etc/passwd", typeflag: tar.TypeReg, mode: 0o644, content: "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"},
		{path: "etc/group", typeflag: tar.TypeReg, mode: 0o644},
	} {
		t.Run(tc.path, func(t *testing.T) {
			h, ok := got[tc.path]
			if !ok {
				t.Fatalf("%s missing from the layer", tc.path)
			}
			if h.Typeflag != tc.typeflag || h.Mode != tc.mode || h.Linkname != tc.link || h.Uid != 0 || !h.ModTime.Equal(imageTime) {
				t.Errorf("%s: type %c mode %o link %q uid %d time %s; want type %c mode %o link %q uid 0 time %s",
					tc.path, h.Typeflag, h.Mode, h.Linkname, h.Uid, h.ModTime, tc.typeflag, tc.mode, tc.link, imageTime)
			}
			if tc.content != "" && contents[tc.path] != tc.content {
				t.Errorf("%s content = %q, want %q", tc.path, contents[tc.path], tc.content)
			}
		})
	}
	if n := len(applets); n < 100 {
		t.Errorf("busybox lists only %d applets", n)
	}
	for _, a := range applets {
		if _, ok := got["bin/"+a]; !ok && a != "busybox" {
			t.Errorf("applet %s has no /bin link", a)
		}
	}
}

func TestBuildImageBadFiles(t *testing.T) {
	if _, err := os.Stat(BusyboxPath); err != nil {
		t.Skipf("skipping: %s not installed (Debian package busybox-static)", BusyboxPath)
	}
	for _, tc := range []struct {
		name  string
		files map[string]string
	}{
		{name: "relative path", files: map[string]string{"etc/x": "x"}},
		{name: "root", files: map[string]string{"/": "x"}},
		{name: "file as parent", files: map[string]string{"/etc/passwd/x": "x"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := BuildImage(ImageConfig{Files: tc.files}); err == nil {
				t.Errorf("BuildImage(%v) succeeded, want an error", tc.files)
			}
		})
	}
}

// TestPushImage pushes to the real registry and reads the manifest back. The registry runs as
// any user, so this test does not need root.
func TestPushImage(t *testing.T) {
	if _, err := os.Stat(RegistryBinary); err != nil {
		t.Skipf("skipping: %s not installed (Debian package docker-registry)", RegistryBinary)
	}
	reg := StartRegistry(t)
	ref, err := PushImage(reg.Addr, "demo/web:latest", DemoWebConfig())
	if err != nil {
		t.Fatal(err)
	}
	if want := reg.Addr + "/demo/web:latest"; ref != want {
		t.Errorf("reference = %q, want %q", ref, want)
	}
	req, _ := http.NewRequest(http.MethodGet, "http://"+reg.Addr+"/v2/demo/web/manifests/latest", nil)
	req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !bytes.Contains(body, []byte("application/vnd.oci.image.layer.v1.tar+gzip")) {
		t.Errorf("GET manifest: %s %s", resp.Status, body)
	}
	img, _ := BuildImage(DemoWebConfig())
	d, _ := img.Digest()
	if got := resp.Header.Get("Docker-Content-Digest"); got != d.String() {
		t.Errorf("registry digest %s, built digest %s", got, d)
	}
}
