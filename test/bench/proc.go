package bench

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// userHZ is the unit of the CPU times in /proc/<pid>/stat: USER_HZ, sysconf(_SC_CLK_TCK), which
// the kernel reports as 100 on every architecture whatever its internal HZ.
const userHZ = 100

// procCPU returns the CPU seconds (user + system) process pid has used so far.
func procCPU(pid int) (float64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("cpu of %d: %w", pid, err)
	}
	ticks, err := parseStatCPU(string(data))
	if err != nil {
		return 0, fmt.Errorf("cpu of %d: %w", pid, err)
	}
	return float64(ticks) / userHZ, nil
}

// parseStatCPU returns utime+stime, in clock ticks, of a /proc/<pid>/stat line. The command
// name (field 2) is in parentheses and may hold spaces and parentheses itself, so the fields
// are counted from the last ')': then state is field 3, utime field 14 and stime field 15.
func parseStatCPU(stat string) (int64, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("stat %q: no command name", stat)
	}
	f := strings.Fields(stat[i+1:]) // f[0] is field 3
	const utime, stime = 14 - 3, 15 - 3
	if len(f) <= stime {
		return 0, fmt.Errorf("stat %q: %d fields after the command name, want at least %d", stat, len(f), stime+1)
	}
	var sum int64
	for _, k := range []int{utime, stime} {
		v, err := strconv.ParseInt(f[k], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("stat field %d: %w", k+3, err)
		}
		sum += v
	}
	return sum, nil
}

// rssKiB reads VmRSS of a process from /proc/<pid>/status.
func rssKiB(pid int) (int64, error) { return statusKiB(pid, "VmRSS") }

// peakRSSKiB reads VmHWM, the peak resident set size, of a process from /proc/<pid>/status.
func peakRSSKiB(pid int) (int64, error) { return statusKiB(pid, "VmHWM") }

func statusKiB(pid int, key string) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("%s of %d: %w", key, pid, err)
	}
	v, err := parseStatusKiB(string(data), key)
	if err != nil {
		return 0, fmt.Errorf("%s of %d: %w", key, pid, err)
	}
	return v, nil
}

// parseStatusKiB returns the value of a "Key:   12345 kB" line of /proc/<pid>/status.
func parseStatusKiB(status, key string) (int64, error) {
	for _, line := range strings.Split(status, "\n") {
		v, ok := strings.CutPrefix(line, key+":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("line %q: want \"%s: <n> kB\"", line, key)
		}
		return strconv.ParseInt(f[0], 10, 64)
	}
	return 0, fmt.Errorf("no %s line", key)
}
