// Package leakcheck finds goroutines a test package left running.
package leakcheck

import (
	"fmt"
	"runtime"
	"strings"
	"time"
)

// Goroutines returns the stacks of the running goroutines whose stack
// mentions any of markers (e.g. "gitgate/gitgate/sshd.").
func Goroutines(markers ...string) []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var found []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		for _, m := range markers {
			if strings.Contains(g, m) {
				found = append(found, g)
				break
			}
		}
	}
	return found
}

// Check waits, for at most 10 s (goroutines that were told to stop may take
// a moment), until no goroutine mentions markers, and returns an error with
// the stacks of those that are left.
func Check(markers ...string) error {
	var left []string
	for i := 0; i < 1000; i++ {
		if left = Goroutines(markers...); len(left) == 0 {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("goroutines left behind:\n%s", strings.Join(left, "\n\n"))
}
