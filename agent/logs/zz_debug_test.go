package logs

import (
	"fmt"
	"os"
	"strings"
	"path/filepath"
	"testing"
)

func TestZZBurstDebug(t *testing.T) {
	for round := range 100 {
		path := filepath.Join(t.TempDir(), fmt.Sprint("c", round, ".log"))
		w := newTestWriter(t, path, 500, 100)
		writeN(t, w, 0, 5)
		f := startFollower(t, path, ReadOptions{})
		f.expect(t, 0, 5)
		writeN(t, w, 5, 600)
		for i := 5; i < 600; i++ {
			e := <-f.got
			if want := fmt.Sprintf("entry %04d", i); e.Message != want {
				// dump the files
				for j := 0; j < 80; j++ {
					es := readOneMaybe(rotatedName(path, j))
					if len(es) > 0 {
						t.Logf("%s: %s .. %s", rotatedName(path, j), es[0].Message, es[len(es)-1].Message)
					}
				}
				for _, l := range traceLog {
					t.Log(l)
				}
				t.Fatalf("round %d: got %q, want %q", round, e.Message, want)
			}
		}
		f.cancel()
		<-f.done
		f.done <- nil
		traceLog = nil
	}
}

func readOneMaybe(name string) []Entry {
	var out []Entry
	data, _ := os.ReadFile(name)
	for _, line := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
		e, err := parseEntry([]byte(line))
		if err == nil {
			out = append(out, e)
		}
	}
	return out
}
