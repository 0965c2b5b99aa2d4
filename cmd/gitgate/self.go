package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// selfBinary is the path hooks use to run this gitgate: the name it was
// started by (found in PATH when it has no slash), without resolving
// symlinks, so that a hook follows a /usr/local/bin/gitgate link to whatever
// version it points at after an upgrade. It falls back on os.Executable.
func selfBinary() (string, error) {
	name := os.Args[0]
	if !strings.Contains(name, "/") {
		if p, err := exec.LookPath(name); err == nil {
			name = p
		}
	}
	if abs, err := filepath.Abs(name); err == nil {
		if fi, err := os.Stat(abs); err == nil && fi.Mode().IsRegular() {
			return abs, nil
		}
	}
	return os.Executable()
}
