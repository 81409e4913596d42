package cmdutil

import (
	"reflect"
	"testing"
)

func TestListFlag(t *testing.T) {
	var l ListFlag
	for _, v := range []string{"a,b", "c", " d , ,e"} {
		if err := l.Set(v); err != nil {
			t.Fatal(err)
		}
	}
	if want := (ListFlag{"a", "b", "c", "d", "e"}); !reflect.DeepEqual(l, want) {
		t.Fatalf("got %v, want %v", l, want)
	}
	if _, err := NewLogger("loud"); err == nil {
		t.Fatal("a bad level must fail")
	}
}
