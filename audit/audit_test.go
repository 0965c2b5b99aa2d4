package audit

import (
	"bufio"
	"encoding/json"
	"os"
	"sync"
	"testing"
)

func TestRecordAppendsOneLinePerEvent(t *testing.T) {
	l := Open(t.TempDir())
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := l.Record(Event{Action: "maintenance.enable", Actor: "alice", Transport: "api",
				Old: map[string]any{"enabled": false}, New: map[string]any{"enabled": true}}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	f, err := os.Open(l.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if fi, _ := f.Stat(); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var ev Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("line %d: %v: %s", n+1, err, sc.Text())
		}
		if ev.Time.IsZero() || ev.Actor != "alice" {
			t.Fatalf("line %d: %+v", n+1, ev)
		}
		n++
	}
	if n != 20 {
		t.Fatalf("%d lines, want 20", n)
	}
}
