package main

import "testing"

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{
		"1": 1, "512B": 512, "32MiB": 32 << 20, "32mib": 32 << 20, "2GiB": 2 << 30, "64K": 64 << 10,
		"10 MB": 10 << 20, "-1": -1,
	} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "0", "-2", "MiB", "1.5MiB", "1TiB", "9999999999999GiB", "12 34"} {
		if got, err := parseSize(bad); err == nil {
			t.Errorf("parseSize(%q) = %d, want an error", bad, got)
		}
	}
}
