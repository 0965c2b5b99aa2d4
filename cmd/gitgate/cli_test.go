package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// runCLI runs the command line with stdin and returns its output and exit
// status, as main would.
func runCLI(t *testing.T, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	app := newApp(&out, &errb)
	app.Reader = strings.NewReader(stdin)
	err := app.RunContext(context.Background(), interspersed(app, append([]string{"gitgate"}, args...)))
	code = exitCode(&errb, err)
	return out.String(), errb.String(), code
}
