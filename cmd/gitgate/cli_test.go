package main

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"
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

// awaitStatus polls GET url (credentials may be in it) until it answers
// want, for at most 10 s; it returns the last answer otherwise. Tests use it
// to wait until a gate has seen a change made by the CLI.
func awaitStatus(url string, want int) (last string, ok bool) {
	for range 1000 {
		resp, err := http.Get(url)
		if err != nil {
			last = err.Error()
		} else {
			resp.Body.Close()
			if resp.StatusCode == want {
				return "", true
			}
			last = resp.Status
		}
		time.Sleep(10 * time.Millisecond)
	}
	return last, false
}
