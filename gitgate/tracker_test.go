package gitgate

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestTrackerDrain(t *testing.T) {
	tr := NewTracker(nil)
	if err := tr.WaitWritesDrained(context.Background()); err != nil {
		t.Fatal(err)
	}
	endRead := tr.Begin(Operation{Service: UploadPack, Repo: "a"})
	endPush := tr.Begin(Operation{Service: ReceivePack, Repo: "b", User: &User{Name: "alice"}})
	if w, r := tr.Counts(); w != 1 || r != 1 {
		t.Fatalf("Counts = %d, %d", w, r)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	if err := tr.WaitWritesDrained(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitWritesDrained with a push running = %v", err)
	}
	if in := tr.InFlight(); len(in) != 2 || in[0].Repo != "a" || in[1].User.Name != "alice" {
		t.Fatalf("InFlight = %+v", in)
	}
	done := make(chan error)
	go func() { done <- tr.WaitWritesDrained(context.Background()) }()
	endPush(OutcomeOK, 10)
	endPush(OutcomeOK, 10) // a second call is ignored
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	endRead(OutcomeOK, 0)
	if w, r := tr.Counts(); w != 0 || r != 0 {
		t.Fatalf("Counts after end = %d, %d", w, r)
	}
}
