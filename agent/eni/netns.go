package eni

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// List returns the names of the task network namespaces under the netns dir (files whose
// name starts with "orch-"), sorted, so that a restarted agent can tear down those whose task
// it no longer knows. A name may be a leftover file whose mount is gone; Teardown removes it
// as well.
func (m *Manager) List(ctx context.Context) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(m.netnsDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("eni: list netns dir %s: %w", m.netnsDir, err)
	}
	var names []string
	for _, e := range entries {
		if !e.IsDir() && strings.HasPrefix(e.Name(), NetNSPrefix) {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	return names, nil
}

// doInNetNS runs fn on an OS thread switched into target. Following CNI's pkg/ns, the switch
// happens in a fresh goroutine locked to its thread, and the thread is unlocked only if
// switching back succeeded; otherwise the goroutine exits still locked and the Go runtime
// destroys the thread rather than reuse it in the wrong namespace. fn must not start
// goroutines that expect to run in target: they may run on any thread.
func doInNetNS(target netns.NsHandle, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- fmt.Errorf("open current netns: %w", err)
			return
		}
		defer orig.Close()
		if err := netns.Set(target); err != nil {
			errc <- fmt.Errorf("enter netns: %w", err)
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("return to original netns: %w", err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// isNetNS reports whether path is a mounted network namespace (rather than missing, or a
// plain file left behind when its mount went away).
func isNetNS(path string) (bool, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return false, nil
		}
		return false, fmt.Errorf("statfs %s: %w", path, err)
	}
	// nsfs since Linux 3.19; before that namespace files lived on procfs.
	return st.Type == unix.NSFS_MAGIC || st.Type == unix.PROC_SUPER_MAGIC, nil
}

// createNetNS makes path a new, empty network namespace that persists without processes, as
// `ip netns add` and CNI's testutils do: a thread unshares CLONE_NEWNET and its
// /proc/self/task/<tid>/ns/net is bind-mounted onto the file. The thread is never switched
// back: its goroutine exits locked, so the runtime discards it.
func createNetNS(path string) error {
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE, 0o444)
	if err != nil {
		return fmt.Errorf("create netns mount point %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("create netns mount point %s: %w", path, err)
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// No UnlockOSThread: this thread now lives in the new namespace.
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("unshare netns: %w", err)
			return
		}
		src := fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
		if err := unix.Mount(src, path, "none", unix.MS_BIND, ""); err != nil {
			errc <- fmt.Errorf("bind-mount %s on %s: %w", src, path, err)
			return
		}
		errc <- nil
	}()
	if err := <-errc; err != nil {
		// Nothing is mounted on the file, so removing it cannot fail with EBUSY.
		if rerr := os.Remove(path); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			return errors.Join(err, rerr)
		}
		return err
	}
	return nil
}

// ensureNetNS adopts the namespace mounted at path or creates it. A plain file left at path
// (its mount gone) is mounted over.
func ensureNetNS(path string) (created bool, err error) {
	ok, err := isNetNS(path)
	if err != nil {
		return false, err
	}
	if ok {
		return false, nil
	}
	return true, createNetNS(path)
}

// removeNetNS unmounts the namespace at path (lazily: processes still inside keep it alive
// until they exit) and removes the file. Already gone is success.
func removeNetNS(path string) error {
	for range 8 { // a mount point may have been stacked by a racing creator
		mounted, err := isNetNS(path)
		if err != nil {
			return err
		}
		if !mounted {
			break
		}
		if err := unix.Unmount(path, unix.MNT_DETACH); err != nil &&
			!errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("unmount %s: %w", path, err)
		}
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", path, err)
	}
	return nil
}

// ensureSharedDir creates dir and makes it a shared mount point, as `ip netns add` does for
// /run/netns: remount it shared, and if it is not a mount point yet (EINVAL), bind-mount it
// onto itself first.
func ensureSharedDir(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	err = unix.Mount("", dir, "none", unix.MS_SHARED|unix.MS_REC, "")
	if err == nil {
		return nil
	}
	if !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("make %s shared: %w", dir, err)
	}
	if err := unix.Mount(dir, dir, "none", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind-mount %s on itself: %w", dir, err)
	}
	if err := unix.Mount("", dir, "none", unix.MS_SHARED|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("make %s shared: %w", dir, err)
	}
	return nil
}
