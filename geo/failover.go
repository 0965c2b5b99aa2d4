package geo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/gitgate/gitgate/internal/atomicfile"
)

// FailoverFileName is the progress of a planned failover, kept in the data
// dir of the primary that runs it (see FailoverRecord).
const FailoverFileName = "geo-failover.json"

// The five steps of a planned failover, in order. StepDone is past the
// last: nothing is left to do.
const (
	StepMaintenance = 1 + iota
	StepDrain
	StepInSync
	StepPromote
	StepReopen
	StepDone
)

// StepNames are the steps' names as printed, indexed by step.
var StepNames = [...]string{
	StepMaintenance: "enable maintenance on the primary (every site follows)",
	StepDrain:       "wait until no push is in flight on any site",
	StepInSync:      "wait until the target reports every repository and the access data synced and verified",
	StepPromote:     "promote the target; this site becomes its secondary; the other secondaries follow it",
	StepReopen:      "disable maintenance on the new primary",
}

// DefaultFailoverTimeout bounds a failover run when no timeout is given.
const DefaultFailoverTimeout = 2 * time.Minute

// FailoverRecord is a planned failover's progress, persisted (atomically,
// fsynced) before each step acts, so that a run that stopped (a timeout, a
// failure, Ctrl-C, a crash) is resumed where it was by running the command
// again, and so that a second failover to another node is refused while
// one is half done.
type FailoverRecord struct {
	// To is the target node.
	To string `json:"to"`
	// From is this site's term when the failover began; Target is the term
	// the target is promoted to (From's epoch plus one, the target's name).
	From   Term `json:"from"`
	Target Term `json:"target"`
	// Message is the maintenance message of step 1.
	Message string `json:"message,omitempty"`
	// KeepMaintenance skips step 5.
	KeepMaintenance bool `json:"keep_maintenance,omitempty"`
	// MaintenanceBefore says whether maintenance was already on before
	// step 1 (nil until read): an abort turns it off only if it was not.
	MaintenanceBefore *bool `json:"maintenance_before,omitempty"`
	// Step is the next step to run (StepDone: finished).
	Step int `json:"step"`
	// By is who started the failover.
	By string `json:"by,omitempty"`
	// Started and Updated are when it began and last changed.
	Started time.Time `json:"started"`
	Updated time.Time `json:"updated"`
}

// ReadFailover reads <dataDir>/FailoverFileName; ok is false when no
// failover is in progress.
func ReadFailover(dataDir string) (rec FailoverRecord, ok bool, err error) {
	path := filepath.Join(dataDir, FailoverFileName)
	data, err := atomicfile.ReadBounded(path, maxRoleFileSize)
	if errors.Is(err, fs.ErrNotExist) {
		return FailoverRecord{}, false, nil
	}
	if err != nil {
		return FailoverRecord{}, false, fmt.Errorf("geo failover record: %w", err)
	}
	if err := json.Unmarshal(data, &rec); err != nil {
		return FailoverRecord{}, false, fmt.Errorf("geo failover record %s: %w", path, err)
	}
	if rec.Step < StepMaintenance || rec.Step > StepDone || ValidateNodeName(rec.To) != nil || rec.Target.Primary != rec.To {
		return FailoverRecord{}, false, fmt.Errorf("geo failover record %s: invalid (step %d, to %q)", path, rec.Step, rec.To)
	}
	return rec, true, nil
}

// WriteFailover writes rec to <dataDir>/FailoverFileName atomically.
func WriteFailover(dataDir string, rec FailoverRecord) error {
	data, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return fmt.Errorf("encode the failover record: %w", err)
	}
	if err := atomicfile.Write(filepath.Join(dataDir, FailoverFileName), append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("write the failover record: %w", err)
	}
	return nil
}

// RemoveFailover removes the failover record (done or aborted).
func RemoveFailover(dataDir string) error {
	err := os.Remove(filepath.Join(dataDir, FailoverFileName))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove the failover record: %w", err)
	}
	return nil
}

// SyncCheck is what step 3 found about the target.
type SyncCheck struct {
	// Blockers say why the target is not ready yet; empty: ready.
	Blockers []string
}

// PrimaryView is the new primary as the demoted site, now its secondary,
// sees it (step 5).
type PrimaryView struct {
	// Following is true once this site follows the target live.
	Following bool
	// Maintenance is the new primary's maintenance state, as mirrored.
	Maintenance bool
}

// FailoverSite is what the step machine needs of the site it runs on. The
// server implements it over its store, tracker, Geo primary and role.
type FailoverSite interface {
	// Role is this site's role and the highest term it knows.
	Role() RoleRecord
	// Secondaries are the nodes listed in geo.yaml.
	Secondaries() []string
	// Maintenance says whether this site's maintenance is on.
	Maintenance() (bool, error)
	// SetMaintenance turns this site's maintenance on (with message) or off.
	SetMaintenance(ctx context.Context, on bool, message string) error
	// InFlight describes the pushes in flight on this site, which include
	// every push a secondary proxies here.
	InFlight(ctx context.Context) ([]string, error)
	// CheckTarget compares the target's last report with this site's
	// repositories and access data now.
	CheckTarget(ctx context.Context, node string) (SyncCheck, error)
	// OrderPromotion makes this site's answers tell node to take term t
	// (and, once this site is demoted by t, tell every other secondary to
	// follow it); reopen says whether the new primary disables maintenance
	// once every secondary has confirmed t.
	OrderPromotion(t Term, reopen bool) error
	// Unannounced lists the other secondaries not yet told of t.
	Unannounced(t Term) []string
	// Follow persists that this site follows t's primary, and switches the
	// running gate to that role once the current request has ended.
	Follow(ctx context.Context, t Term) error
	// NewPrimary is the new primary as this site, its secondary, sees it.
	NewPrimary(t Term) PrimaryView
	// Audit records one step in the audit log.
	Audit(action string, fields map[string]any)
}

// FailoverRequest is one run of "gitgate geo failover".
type FailoverRequest struct {
	// To is the target node; empty resumes the failover in progress.
	To string
	// Message is the maintenance message (a default when empty).
	Message string
	// Timeout bounds this run (DefaultFailoverTimeout when zero).
	Timeout time.Duration
	// DryRun prints the plan and what blocks it now, and changes nothing.
	DryRun bool
	// KeepMaintenance leaves the new primary in maintenance.
	KeepMaintenance bool
	// Abort returns to the starting state, before the promotion began.
	Abort bool
	// By is the admin who asked.
	By string
}

// Phases of a FailoverEvent.
const (
	PhaseStart   = "start"
	PhaseEnd     = "end"
	PhaseFailed  = "failed"
	PhasePlan    = "plan"
	PhaseBlocker = "blocker"
	PhaseInfo    = "info"
	// PhaseRestart says this site now switches its role: the caller
	// reconnects and runs the command again, which resumes at step 5.
	PhaseRestart = "restart"
	PhaseDone    = "done"
	// PhaseError ends a run that failed or was refused.
	PhaseError = "error"
)

// FailoverPath is the admin API endpoint that runs a failover on the
// primary (POST; form fields to, message, timeout, dry_run,
// keep_maintenance, abort), answering with FailoverEvent JSON lines.
const FailoverPath = "/api/v4/geo/failover"

// FailoverEvent is one line of a failover's progress.
type FailoverEvent struct {
	Step     int           `json:"step,omitempty"`
	Phase    string        `json:"phase"`
	Text     string        `json:"text"`
	Duration time.Duration `json:"duration,omitempty"`
}

// Errors of a failover run.
var (
	// ErrFailoverBusy refuses a second run while one is running.
	ErrFailoverBusy = errors.New("a failover is running on this site now; wait for it or interrupt it")
	// ErrFailoverRefused is a failover that cannot start or resume here.
	ErrFailoverRefused = errors.New("failover refused")
	// ErrFailoverStopped is a run that stopped before the end (timeout,
	// failure, interruption): the state is consistent and resumable.
	ErrFailoverStopped = errors.New("failover stopped")
	// ErrRestarting ends a run whose site switches its role now; run the
	// command again to finish.
	ErrRestarting = errors.New("this site switches to its new role; run the command again to finish")
)

// DefaultFailoverMessage is step 1's maintenance message when none is
// given.
const DefaultFailoverMessage = "Planned Geo failover in progress; pushes resume shortly."

// Failover runs planned failovers on one site, one at a time: the five
// steps of FailoverRecord, each persisted before it acts, so that every
// step is idempotent and a run that stopped resumes where it was.
type Failover struct {
	// DataDir holds the failover record.
	DataDir string
	// Site is the site the failover runs on.
	Site FailoverSite
	// Poll is how often a waiting step looks again (100 ms when zero).
	Poll time.Duration

	running sync.Mutex
}

// Run runs (or resumes, or aborts, or plans) a failover, reporting every
// step's start and end to progress. A run that stops returns an error
// wrapping ErrFailoverStopped; maintenance stays on and exactly one site is
// primary; the error says how to resume or abort.
func (f *Failover) Run(ctx context.Context, req FailoverRequest, progress func(FailoverEvent)) error {
	if !f.running.TryLock() {
		return ErrFailoverBusy
	}
	defer f.running.Unlock()
	if progress == nil {
		progress = func(FailoverEvent) {}
	}
	rec, ok, err := ReadFailover(f.DataDir)
	if err != nil {
		return err
	}
	if req.Abort {
		return f.abort(rec, ok, req, progress)
	}
	if ok && req.To != "" && req.To != rec.To {
		return fmt.Errorf("%w: a failover to %s is in progress (next: step %d); resume it with \"gitgate geo failover --to %s\"%s",
			ErrFailoverRefused, rec.To, rec.Step, rec.To, abortHint(rec))
	}
	if !ok {
		if rec, err = f.begin(req); err != nil {
			return err
		}
	}
	if req.DryRun {
		if n := f.plan(ctx, rec, ok, progress); n > 0 {
			progress(FailoverEvent{Phase: PhaseDone, Text: fmt.Sprintf("dry run: %d blockers now; nothing was changed", n)})
		} else {
			progress(FailoverEvent{Phase: PhaseDone, Text: "dry run: nothing blocks the failover now; nothing was changed"})
		}
		return nil
	}
	timeout := req.Timeout
	if timeout <= 0 {
		timeout = DefaultFailoverTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if !ok {
		rec.Started, rec.Updated = time.Now().UTC(), time.Now().UTC()
		if err := WriteFailover(f.DataDir, rec); err != nil {
			return err
		}
		f.Site.Audit("geo.failover.start", map[string]any{"to": rec.To, "target": rec.Target.String(), "by": req.By})
	} else {
		progress(FailoverEvent{Phase: PhaseInfo, Step: rec.Step, Text: fmt.Sprintf("resuming the failover to %s at step %d", rec.To, rec.Step)})
	}
	for rec.Step < StepDone {
		step := rec.Step
		start := time.Now()
		progress(FailoverEvent{Step: step, Phase: PhaseStart, Text: StepNames[step]})
		err := f.runStep(ctx, &rec)
		if errors.Is(err, ErrRestarting) {
			progress(FailoverEvent{Step: step, Phase: PhaseEnd, Text: StepNames[step], Duration: time.Since(start)})
			f.Site.Audit("geo.failover.step", map[string]any{"to": rec.To, "step": step, "duration": time.Since(start).String()})
			progress(FailoverEvent{Phase: PhaseRestart, Text: "this site now restarts its Geo part as a secondary of " + rec.To})
			return err
		}
		if err != nil {
			if ctx.Err() != nil && !errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
				err = fmt.Errorf("timed out: %w", err)
			}
			progress(FailoverEvent{Step: step, Phase: PhaseFailed, Text: err.Error(), Duration: time.Since(start)})
			f.Site.Audit("geo.failover.stopped", map[string]any{"to": rec.To, "step": step, "error": err.Error()})
			return fmt.Errorf("%w at step %d (%s): %w\n%s", ErrFailoverStopped, step, StepNames[step], err, f.stoppedHint(rec))
		}
		progress(FailoverEvent{Step: step, Phase: PhaseEnd, Text: StepNames[step], Duration: time.Since(start)})
		f.Site.Audit("geo.failover.step", map[string]any{"to": rec.To, "step": step, "duration": time.Since(start).String()})
	}
	if err := RemoveFailover(f.DataDir); err != nil {
		return err
	}
	f.Site.Audit("geo.failover.done", map[string]any{"to": rec.To, "term": rec.Target.String()})
	progress(FailoverEvent{Phase: PhaseDone, Text: fmt.Sprintf("%s is the primary in %s", rec.To, rec.Target)})
	return nil
}

// begin checks a new failover and returns its record (not yet written).
func (f *Failover) begin(req FailoverRequest) (FailoverRecord, error) {
	role := f.Site.Role()
	switch {
	case req.To == "":
		return FailoverRecord{}, fmt.Errorf("%w: no failover is in progress; name the target with --to NODE", ErrFailoverRefused)
	case role.Role != RolePrimary || role.Primary != role.Node:
		return FailoverRecord{}, fmt.Errorf("%w: this site is not the Geo primary (%s): run the failover on the primary", ErrFailoverRefused, role.Term)
	case role.Node == "":
		return FailoverRecord{}, fmt.Errorf("%w: this primary has no node name: start it with --geo-node-name (the name its secondaries' geo.yaml lists for it)", ErrFailoverRefused)
	case req.To == role.Node:
		return FailoverRecord{}, fmt.Errorf("%w: %s is this site, already the primary", ErrFailoverRefused, req.To)
	}
	if err := ValidateNodeName(req.To); err != nil {
		return FailoverRecord{}, fmt.Errorf("%w: %w", ErrFailoverRefused, err)
	}
	known := false
	for _, n := range f.Site.Secondaries() {
		known = known || n == req.To
	}
	if !known {
		return FailoverRecord{}, fmt.Errorf("%w: %s is not a secondary listed in this primary's %s", ErrFailoverRefused, req.To, ConfigFileName)
	}
	msg := req.Message
	if msg == "" {
		msg = DefaultFailoverMessage
	}
	return FailoverRecord{
		To: req.To, From: role.Term, Target: Term{Epoch: role.Epoch + 1, Primary: req.To},
		Message: msg, KeepMaintenance: req.KeepMaintenance, Step: StepMaintenance, By: req.By,
	}, nil
}

// save persists rec with its next step.
func (f *Failover) save(rec *FailoverRecord, step int) error {
	rec.Step, rec.Updated = step, time.Now().UTC()
	return WriteFailover(f.DataDir, *rec)
}

// runStep runs rec.Step and moves rec to the next step.
func (f *Failover) runStep(ctx context.Context, rec *FailoverRecord) error {
	switch rec.Step {
	case StepMaintenance:
		if err := f.requirePrimary(); err != nil {
			return err
		}
		if rec.MaintenanceBefore == nil {
			on, err := f.Site.Maintenance()
			if err != nil {
				return err
			}
			rec.MaintenanceBefore = &on
			if err := f.save(rec, StepMaintenance); err != nil {
				return err
			}
		}
		if err := f.Site.SetMaintenance(ctx, true, rec.Message); err != nil {
			return err
		}
		return f.save(rec, StepDrain)
	case StepDrain:
		if err := f.requirePrimary(); err != nil {
			return err
		}
		if err := f.waitFor(ctx, func() ([]string, error) { return f.Site.InFlight(ctx) }); err != nil {
			return err
		}
		return f.save(rec, StepInSync)
	case StepInSync:
		if err := f.requirePrimary(); err != nil {
			return err
		}
		if err := f.waitFor(ctx, func() ([]string, error) {
			// A push that started meanwhile (a maintenance bypass) is
			// drained again before the comparison counts.
			if busy, err := f.Site.InFlight(ctx); err != nil || len(busy) > 0 {
				return busy, err
			}
			c, err := f.Site.CheckTarget(ctx, rec.To)
			return c.Blockers, err
		}); err != nil {
			return err
		}
		return f.save(rec, StepPromote)
	case StepPromote:
		// Persisted first: from here on the target may be primary, so the
		// failover can only be resumed, never aborted.
		if err := f.save(rec, StepPromote); err != nil {
			return err
		}
		role := f.Site.Role()
		if role.Role == RolePrimary && role.Primary == role.Node {
			if err := f.Site.OrderPromotion(rec.Target, !rec.KeepMaintenance); err != nil {
				return err
			}
		}
		if err := f.waitFor(ctx, func() ([]string, error) {
			if r := f.Site.Role(); r.Epoch < rec.Target.Epoch {
				return []string{rec.To + " has not taken " + rec.Target.String() + " yet"}, nil
			} else if r.Term != rec.Target {
				return nil, fmt.Errorf("this site knows %s, newer than the failover's %s: resolve by hand", r.Term, rec.Target)
			}
			var out []string
			for _, n := range f.Site.Unannounced(rec.Target) {
				out = append(out, "secondary "+n+" has not been told of the new primary yet")
			}
			return out, nil
		}); err != nil {
			return err
		}
		if err := f.Site.Follow(ctx, rec.Target); err != nil {
			return err
		}
		if err := f.save(rec, StepReopen); err != nil {
			return err
		}
		return ErrRestarting
	case StepReopen:
		if err := f.waitFor(ctx, func() ([]string, error) {
			v := f.Site.NewPrimary(rec.Target)
			switch {
			case !v.Following:
				return []string{"this site does not follow " + rec.To + " yet"}, nil
			case v.Maintenance && !rec.KeepMaintenance:
				return []string{rec.To + " has not reopened yet (it waits until every secondary has confirmed " + rec.Target.String() + ")"}, nil
			}
			return nil, nil
		}); err != nil {
			return err
		}
		return f.save(rec, StepDone)
	}
	return fmt.Errorf("unknown failover step %d", rec.Step)
}

// requirePrimary refuses steps 1-3 on a site that is no longer primary.
func (f *Failover) requirePrimary() error {
	if r := f.Site.Role(); r.Role != RolePrimary || r.Primary != r.Node {
		return fmt.Errorf("this site is no longer the primary: %s", r.Term)
	}
	return nil
}

// waitFor polls blockers until there are none, an error, or ctx ends; the
// last blockers are in the error.
func (f *Failover) waitFor(ctx context.Context, blockers func() ([]string, error)) error {
	poll := f.Poll
	if poll <= 0 {
		poll = 100 * time.Millisecond
	}
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		b, err := blockers()
		if err != nil {
			return err
		}
		if len(b) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: %s", ctx.Err(), strings.Join(b, "; "))
		case <-t.C:
		}
	}
}

// plan prints the steps and what blocks them now.
func (f *Failover) plan(ctx context.Context, rec FailoverRecord, inProgress bool, progress func(FailoverEvent)) (blockers int) {
	if inProgress {
		progress(FailoverEvent{Phase: PhaseInfo, Text: fmt.Sprintf("a failover to %s is in progress, next step %d", rec.To, rec.Step)})
	}
	progress(FailoverEvent{Phase: PhaseInfo, Text: fmt.Sprintf("failover to %s: %s becomes %s", rec.To, rec.From, rec.Target)})
	for s := StepMaintenance; s < StepDone; s++ {
		text := StepNames[s]
		switch {
		case s < rec.Step:
			text += " (done)"
		case s == StepReopen && rec.KeepMaintenance:
			text += " (skipped: --keep-maintenance)"
		}
		progress(FailoverEvent{Step: s, Phase: PhasePlan, Text: text})
	}
	if rec.Step > StepInSync {
		return 0
	}
	if busy, err := f.Site.InFlight(ctx); err != nil {
		blockers++
		progress(FailoverEvent{Step: StepDrain, Phase: PhaseBlocker, Text: "pushes in flight: " + err.Error()})
	} else {
		for _, b := range busy {
			blockers++
			progress(FailoverEvent{Step: StepDrain, Phase: PhaseBlocker, Text: "push in flight: " + b})
		}
	}
	c, err := f.Site.CheckTarget(ctx, rec.To)
	if err != nil {
		c.Blockers = append(c.Blockers, err.Error())
	}
	for _, b := range c.Blockers {
		blockers++
		progress(FailoverEvent{Step: StepInSync, Phase: PhaseBlocker, Text: b})
	}
	return blockers
}

// abort returns to the starting state before step 4.
func (f *Failover) abort(rec FailoverRecord, ok bool, req FailoverRequest, progress func(FailoverEvent)) error {
	switch {
	case !ok:
		return fmt.Errorf("%w: no failover is in progress", ErrFailoverRefused)
	case req.To != "" && req.To != rec.To:
		return fmt.Errorf("%w: the failover in progress goes to %s, not %s", ErrFailoverRefused, rec.To, req.To)
	case rec.Step >= StepPromote:
		return fmt.Errorf("%w: the promotion of %s has begun (%s); it cannot be undone: resume with \"gitgate geo failover --to %s\"",
			ErrFailoverRefused, rec.To, rec.Target, rec.To)
	}
	if rec.MaintenanceBefore != nil && !*rec.MaintenanceBefore {
		if err := f.Site.SetMaintenance(context.Background(), false, ""); err != nil {
			return err
		}
		progress(FailoverEvent{Phase: PhaseInfo, Text: "maintenance disabled (it was off before the failover)"})
	} else {
		progress(FailoverEvent{Phase: PhaseInfo, Text: "maintenance left as it was before the failover"})
	}
	if err := RemoveFailover(f.DataDir); err != nil {
		return err
	}
	f.Site.Audit("geo.failover.abort", map[string]any{"to": rec.To, "step": rec.Step, "by": req.By})
	progress(FailoverEvent{Phase: PhaseDone, Text: "failover to " + rec.To + " aborted; this site is still the primary in " + rec.From.String()})
	return nil
}

// stoppedHint says what state a stopped run left and how to go on.
func (f *Failover) stoppedHint(rec FailoverRecord) string {
	state := "Maintenance stays on; this site is still the primary (" + rec.From.String() + ")."
	if rec.Step >= StepPromote {
		state = "Maintenance stays on; " + rec.To + " is being promoted to " + rec.Target.String() + " and this site refuses pushes."
	}
	return state + " Resume: gitgate geo failover --to " + rec.To + abortHint(rec)
}

func abortHint(rec FailoverRecord) string {
	if rec.Step >= StepPromote {
		return " (the promotion has begun: it can only be resumed)"
	}
	return "; abort: gitgate geo failover --abort"
}
