package main

import (
	"slices"
	"testing"
)

func TestParseInts(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    []int
		wantErr bool
	}{
		{"1000,10000", []int{1000, 10000}, false},
		{" 20 ", []int{20}, false},
		{"1000, 2000", []int{1000, 2000}, false},
		{"", nil, true},
		{"1000,", nil, true},
		{"0", nil, true},
		{"ten", nil, true},
	} {
		got, err := parseInts(tc.in)
		if (err != nil) != tc.wantErr || !slices.Equal(got, tc.want) {
			t.Errorf("parseInts(%q) = %v, %v; want %v, error %v", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
	if s := joinInts([]int{1000, 10000}); s != "1000,10000" {
		t.Errorf("joinInts = %q", s)
	}
}
