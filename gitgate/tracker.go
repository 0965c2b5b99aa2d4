package gitgate

import (
	"context"
	"sort"
	"sync"
	"time"
)

// Outcome is how an operation ended, for metrics.
type Outcome string

// Outcomes of an operation.
const (
	OutcomeOK                 Outcome = "ok"
	OutcomeRefusedMaintenance Outcome = "refused_maintenance"
	OutcomeRefused            Outcome = "refused"
	OutcomeError              Outcome = "error"
)

// OutcomeOf classifies a refusal.
func OutcomeOf(r *Refusal) Outcome {
	if r.Kind == RefusedMaintenance || r.Kind == RefusedStateUnavailable {
		return OutcomeRefusedMaintenance
	}
	return OutcomeRefused
}

// Recorder receives what the tracker sees, for metrics. Implementations
// must be cheap and must not block.
type Recorder interface {
	OperationStarted(op Operation)
	OperationFinished(op Operation, outcome Outcome, bytesSent int64, d time.Duration)
	OperationRefused(op Operation, outcome Outcome)
	AuthFailed(transport Transport, reason string)
}

// Running describes an operation in flight.
type Running struct {
	Operation
	Started time.Time
}

// Registry shares the writes in flight beyond this process: with the
// shared state store, every gate of a site registers its pushes there, so
// that a drain (enable --wait) on any gate sees them all. Implementations
// must not block.
type Registry interface {
	Started(id uint64, op Running)
	Finished(id uint64)
}

// Tracker knows which operations are running, so that an admin can tell
// when the last push has finished after entering maintenance (drain), and
// feeds a Recorder.
type Tracker struct {
	rec Recorder
	reg Registry // nil: this process only

	mu      sync.Mutex
	next    uint64
	running map[uint64]Running
	writes  int
	drained chan struct{} // closed while no write is running
}

// NewTracker returns a tracker feeding rec (nil: no metrics).
func NewTracker(rec Recorder) *Tracker {
	t := &Tracker{rec: rec, running: make(map[uint64]Running), drained: make(chan struct{})}
	close(t.drained)
	return t
}

// ShareWith makes the tracker report every write to reg as well. Call it
// before the first Begin.
func (t *Tracker) ShareWith(reg Registry) { t.reg = reg }

// Begin records that op starts now. Call the returned function exactly
// once when it ends, with its outcome and the bytes sent to the client.
func (t *Tracker) Begin(op Operation) func(Outcome, int64) {
	start := time.Now()
	t.mu.Lock()
	t.next++
	id := t.next
	t.running[id] = Running{Operation: op, Started: start}
	if op.Service.IsWrite() {
		if t.writes == 0 {
			t.drained = make(chan struct{})
		}
		t.writes++
	}
	t.mu.Unlock()
	if t.reg != nil && op.Service.IsWrite() {
		t.reg.Started(id, Running{Operation: op, Started: start})
	}
	if t.rec != nil {
		t.rec.OperationStarted(op)
	}
	var once sync.Once
	return func(outcome Outcome, bytesSent int64) {
		once.Do(func() {
			t.mu.Lock()
			delete(t.running, id)
			if op.Service.IsWrite() {
				t.writes--
				if t.writes == 0 {
					close(t.drained)
				}
			}
			t.mu.Unlock()
			if t.reg != nil && op.Service.IsWrite() {
				t.reg.Finished(id)
			}
			if t.rec != nil {
				t.rec.OperationFinished(op, outcome, bytesSent, time.Since(start))
			}
		})
	}
}

// Refused records an operation the policy refused (it never ran).
func (t *Tracker) Refused(op Operation, r *Refusal) {
	if t.rec != nil {
		t.rec.OperationRefused(op, OutcomeOf(r))
	}
}

// AuthFailed records a failed authentication.
func (t *Tracker) AuthFailed(transport Transport, reason string) {
	if t.rec != nil {
		t.rec.AuthFailed(transport, reason)
	}
}

// InFlight returns the running operations, oldest first.
func (t *Tracker) InFlight() []Running {
	t.mu.Lock()
	out := make([]Running, 0, len(t.running))
	for _, r := range t.running {
		out = append(out, r)
	}
	t.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Started.Before(out[j].Started) })
	return out
}

// Counts returns how many writes and reads are running.
func (t *Tracker) Counts() (writes, reads int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.writes, len(t.running) - t.writes
}

// WaitWritesDrained blocks until no write is running or ctx ends.
func (t *Tracker) WaitWritesDrained(ctx context.Context) error {
	for {
		t.mu.Lock()
		ch, n := t.drained, t.writes
		t.mu.Unlock()
		if n == 0 {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
