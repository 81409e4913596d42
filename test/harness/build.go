package harness

import (
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// OrchCommands are orch's own programs, for BuildBinaries.
var OrchCommands = []string{"./cmd/orch-scheduler", "./cmd/orch-agent", "./cmd/orchctl", "./cmd/orch-logger"}

// binDirPrefix names the per-process directory that BuildBinaries builds into.
const binDirPrefix = "orch-harness-bin-"

var built struct {
	mu    sync.Mutex
	dir   string
	paths map[string]string // package -> binary
}

// BuildBinaries builds the main packages pkgs (module-relative like "./cmd/orchctl", or full
// import paths) with `go build` from the module root and returns binary name -> path. Each
// package is built once per test binary: later calls, from any test, reuse it. The binaries
// live in a per-process temp dir; dirs of earlier test binaries that are no longer running
// are removed on the first call.
func BuildBinaries(t testing.TB, pkgs ...string) map[string]string {
	t.Helper()
	bins, err := buildBinaries(pkgs...)
	if err != nil {
		t.Fatalf("build %v: %v", pkgs, err)
	}
	return bins
}

func buildBinaries(pkgs ...string) (map[string]string, error) {
	built.mu.Lock()
	defer built.mu.Unlock()
	if built.dir == "" {
		removeStaleBinDirs()
		dir, err := os.MkdirTemp("", binDirPrefix+strconv.Itoa(os.Getpid())+"-")
		if err != nil {
			return nil, fmt.Errorf("binaries dir: %w", err)
		}
		built.dir, built.paths = dir, map[string]string{}
	}
	var missing []string
	for _, pkg := range pkgs {
		if _, ok := built.paths[pkg]; !ok {
			missing = append(missing, pkg)
		}
	}
	if len(missing) > 0 {
		root, err := ModuleRoot()
		if err != nil {
			return nil, err
		}
		goBin, err := GoTool()
		if err != nil {
			return nil, err
		}
		// One `go build -o dir/` for all packages: the build cache and parallelism are shared.
		args := append([]string{"build", "-o", built.dir + "/"}, missing...)
		cmd := exec.Command(goBin, args...)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("go %s (in %s): %w\n%s", strings.Join(args, " "), root, err, out)
		}
		for _, pkg := range missing {
			p := filepath.Join(built.dir, path.Base(pkg))
			if _, err := os.Stat(p); err != nil {
				return nil, fmt.Errorf("package %s built no binary (not a main package?): %w", pkg, err)
			}
			built.paths[pkg] = p
		}
	}
	out := make(map[string]string, len(pkgs))
	for _, pkg := range pkgs {
		out[path.Base(pkg)] = built.paths[pkg]
	}
	return out, nil
}

// RemoveBinaries removes what BuildBinaries built; the next call builds again. A TestMain
// may call it after m.Run; otherwise the dir is removed by the first BuildBinaries of a later
// test binary.
func RemoveBinaries() error {
	built.mu.Lock()
	defer built.mu.Unlock()
	if built.dir == "" {
		return nil
	}
	err := os.RemoveAll(built.dir)
	built.dir, built.paths = "", nil
	if err != nil {
		return fmt.Errorf("remove binaries: %w", err)
	}
	return nil
}

// ModuleRoot returns the directory of the go.mod above the working directory.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("working dir: %w", err)
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no go.mod in %s or above", dir)
		}
	}
}

// GoTool finds the go command: on PATH, else the toolchain's usual place.
func GoTool() (string, error) {
	if p, err := exec.LookPath("go"); err == nil {
		return p, nil
	}
	for _, p := range []string{"/usr/local/go/bin/go", "/usr/lib/go/bin/go"} {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("go command not found on PATH or in /usr/local/go/bin")
}

// removeStaleBinDirs removes binary dirs left by test binaries that are no longer running.
func removeStaleBinDirs() {
	matches, _ := filepath.Glob(filepath.Join(os.TempDir(), binDirPrefix+"*"))
	for _, m := range matches {
		rest := strings.TrimPrefix(filepath.Base(m), binDirPrefix)
		pidStr, _, _ := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidStr)
		if err != nil || pid == os.Getpid() {
			continue
		}
		if syscall.Kill(pid, 0) == nil {
			continue // still running
		}
		_ = os.RemoveAll(m)
	}
}
