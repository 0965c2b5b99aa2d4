package gittest

import (
	"sync"
	"time"

	"github.com/gitgate/gitgate/gitgate"
)

// Recorder is a [gitgate.Recorder] that keeps how operations ended and
// which were refused, for tests to read. It is safe for concurrent use.
type Recorder struct {
	mu       sync.Mutex
	finished []gitgate.Outcome
	refused  []gitgate.Outcome
}

var _ gitgate.Recorder = (*Recorder)(nil)

// OperationStarted does nothing.
func (r *Recorder) OperationStarted(gitgate.Operation) {}

// OperationFinished keeps the outcome.
func (r *Recorder) OperationFinished(_ gitgate.Operation, o gitgate.Outcome, _ int64, _ time.Duration) {
	r.mu.Lock()
	r.finished = append(r.finished, o)
	r.mu.Unlock()
}

// OperationRefused keeps the refusal's outcome.
func (r *Recorder) OperationRefused(_ gitgate.Operation, o gitgate.Outcome) {
	r.mu.Lock()
	r.refused = append(r.refused, o)
	r.mu.Unlock()
}

// AuthFailed does nothing.
func (r *Recorder) AuthFailed(gitgate.Transport, string) {}

// Finished returns the outcomes of the operations that ended, in order.
func (r *Recorder) Finished() []gitgate.Outcome {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]gitgate.Outcome(nil), r.finished...)
}

// Refused returns the outcomes of the refused operations, in order.
func (r *Recorder) Refused() []gitgate.Outcome {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]gitgate.Outcome(nil), r.refused...)
}
