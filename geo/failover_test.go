package geo

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeSite is a FailoverSite in memory: a primary "old" with secondaries
// "eu" and "us"; the test sets what blocks each step.
type fakeSite struct {
	mu          sync.Mutex
	role        RoleRecord
	maintenance bool
	inFlight    []string
	notSynced   []string
	ordered     *Term
	takes       bool // the target takes an ordered promotion
	unannounced []string
	following   bool
	newMaint    bool
	failStep    int // SetMaintenance fails when 1
	audit       []string
}

func newFakeSite() *fakeSite {
	return &fakeSite{role: RoleRecord{Term: Term{Epoch: 3, Primary: "old"}, Role: RolePrimary, Node: "old"}, takes: true, newMaint: false}
}

func (s *fakeSite) Role() RoleRecord { s.mu.Lock(); defer s.mu.Unlock(); return s.role }
func (s *fakeSite) Secondaries() []string {
	return []string{"eu", "us"}
}
func (s *fakeSite) Maintenance() (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.maintenance, nil
}
func (s *fakeSite) SetMaintenance(_ context.Context, on bool, _ string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failStep == 1 {
		return errors.New("store unwritable")
	}
	s.maintenance = on
	return nil
}
func (s *fakeSite) InFlight(context.Context) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.inFlight, nil
}
func (s *fakeSite) CheckTarget(context.Context, string) (SyncCheck, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return SyncCheck{Blockers: s.notSynced}, nil
}
func (s *fakeSite) OrderPromotion(t Term, _ bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.maintenance {
		return errors.New("promotion ordered outside maintenance")
	}
	s.ordered = &t
	if s.takes { // the target presents t: this site is demoted
		s.role.Term, s.role.Role = t, RoleSecondary
	}
	return nil
}
func (s *fakeSite) Unannounced(Term) []string { s.mu.Lock(); defer s.mu.Unlock(); return s.unannounced }
func (s *fakeSite) Follow(context.Context, Term) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.following = true
	return nil
}
func (s *fakeSite) NewPrimary(Term) PrimaryView {
	s.mu.Lock()
	defer s.mu.Unlock()
	return PrimaryView{Following: s.following, Maintenance: s.newMaint}
}
func (s *fakeSite) Audit(action string, _ map[string]any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.audit = append(s.audit, action)
}

func runFailover(t *testing.T, f *Failover, req FailoverRequest) ([]FailoverEvent, error) {
	t.Helper()
	var evs []FailoverEvent
	if req.Timeout == 0 {
		req.Timeout = 300 * time.Millisecond
	}
	err := f.Run(context.Background(), req, func(e FailoverEvent) { evs = append(evs, e) })
	return evs, err
}

// TestFailoverStepsResume stops a failover at each waiting step (the
// blocker holds until the timeout), checks the state it leaves (maintenance
// on, this site still primary, the record at that step), then resumes it
// to the end: promotion, the restart into the new role, reopening.
func TestFailoverStepsResume(t *testing.T) {
	for _, stop := range []int{StepDrain, StepInSync, StepPromote, StepReopen} {
		t.Run(StepNames[stop][:12], func(t *testing.T) {
			dir := t.TempDir()
			site := newFakeSite()
			f := &Failover{DataDir: dir, Site: site, Poll: 5 * time.Millisecond}
			switch stop {
			case StepDrain:
				site.inFlight = []string{"group/p by dev"}
			case StepInSync:
				site.notSynced = []string{"eu: 1 pending"}
			case StepPromote:
				site.takes = false
			case StepReopen:
				site.newMaint = true
			}
			_, err := runFailover(t, f, FailoverRequest{To: "eu"})
			if stop == StepReopen {
				if !errors.Is(err, ErrRestarting) {
					t.Fatalf("step 4 should end in a restart, got %v", err)
				}
				_, err = runFailover(t, f, FailoverRequest{})
			}
			if !errors.Is(err, ErrFailoverStopped) || !strings.Contains(err.Error(), "Resume: gitgate geo failover --to eu") {
				t.Fatalf("want a stopped failover with a resume hint, got %v", err)
			}
			rec, ok, _ := ReadFailover(dir)
			if !ok || rec.Step != stop {
				t.Fatalf("record at step %d, want %d (ok=%v)", rec.Step, stop, ok)
			}
			if !site.maintenance {
				t.Fatal("maintenance is off after a stopped failover")
			}
			if stop < StepPromote && site.Role().Role != RolePrimary {
				t.Fatal("this site lost its role before the promotion")
			}
			if stop == StepPromote && site.ordered == nil {
				t.Fatal("the promotion was not ordered")
			}
			// Another target is refused while this one is half done.
			if _, err := runFailover(t, f, FailoverRequest{To: "us"}); !errors.Is(err, ErrFailoverRefused) || !strings.Contains(err.Error(), "--to eu") {
				t.Fatalf("second failover to another node: %v", err)
			}
			site.mu.Lock()
			site.inFlight, site.notSynced, site.takes, site.newMaint = nil, nil, true, false
			if site.ordered != nil && site.role.Role == RolePrimary { // the target takes it now
				site.role.Term, site.role.Role = *site.ordered, RoleSecondary
			}
			site.mu.Unlock()
			_, err = runFailover(t, f, FailoverRequest{To: "eu"})
			if stop < StepReopen {
				if !errors.Is(err, ErrRestarting) {
					t.Fatalf("resume to step 4: %v", err)
				}
				_, err = runFailover(t, f, FailoverRequest{})
			}
			if err != nil {
				t.Fatalf("resumed failover: %v", err)
			}
			if _, ok, _ := ReadFailover(dir); ok {
				t.Fatal("the record outlived a finished failover")
			}
			if r := site.Role(); r.Term != (Term{Epoch: 4, Primary: "eu"}) || r.Role != RoleSecondary || !site.following {
				t.Fatalf("end state: %+v following=%v", r, site.following)
			}
		})
	}
}

// TestFailoverAbort: before the promotion, --abort restores maintenance as
// it was and removes the record; from step 4 on it is refused.
func TestFailoverAbort(t *testing.T) {
	for _, before := range []bool{false, true} {
		dir := t.TempDir()
		site := newFakeSite()
		site.maintenance = before
		site.notSynced = []string{"eu: 2 pending"}
		f := &Failover{DataDir: dir, Site: site, Poll: 5 * time.Millisecond}
		if _, err := runFailover(t, f, FailoverRequest{To: "eu"}); !errors.Is(err, ErrFailoverStopped) {
			t.Fatal(err)
		}
		if _, err := runFailover(t, f, FailoverRequest{Abort: true}); err != nil {
			t.Fatal(err)
		}
		if site.maintenance != before {
			t.Fatalf("maintenance %v after abort, was %v before", site.maintenance, before)
		}
		if _, ok, _ := ReadFailover(dir); ok || site.Role().Role != RolePrimary {
			t.Fatal("abort left a record or changed the role")
		}
	}
	dir := t.TempDir()
	site := newFakeSite()
	site.takes = false
	f := &Failover{DataDir: dir, Site: site, Poll: 5 * time.Millisecond}
	if _, err := runFailover(t, f, FailoverRequest{To: "eu"}); !errors.Is(err, ErrFailoverStopped) {
		t.Fatal(err)
	}
	if _, err := runFailover(t, f, FailoverRequest{Abort: true}); !errors.Is(err, ErrFailoverRefused) {
		t.Fatalf("abort after the promotion began: %v", err)
	}
	if !site.maintenance {
		t.Fatal("maintenance turned off")
	}
}

// TestFailoverRefusals: unknown, invalid or own node, no node name, a
// secondary, nothing to resume, a concurrent run.
func TestFailoverRefusals(t *testing.T) {
	cases := map[string]func(*fakeSite) FailoverRequest{
		"unknown": func(*fakeSite) FailoverRequest { return FailoverRequest{To: "ap"} },
		"invalid": func(*fakeSite) FailoverRequest { return FailoverRequest{To: "../x"} },
		"self":    func(*fakeSite) FailoverRequest { return FailoverRequest{To: "old"} },
		"nothing": func(*fakeSite) FailoverRequest { return FailoverRequest{} },
		"no name": func(s *fakeSite) FailoverRequest {
			s.role.Node, s.role.Primary = "", ""
			return FailoverRequest{To: "eu"}
		},
		"secondary":  func(s *fakeSite) FailoverRequest { s.role.Role = RoleSecondary; return FailoverRequest{To: "eu"} },
		"abort none": func(*fakeSite) FailoverRequest { return FailoverRequest{Abort: true} },
	}
	for name, setup := range cases {
		dir := t.TempDir()
		site := newFakeSite()
		req := setup(site)
		f := &Failover{DataDir: dir, Site: site}
		if _, err := runFailover(t, f, req); !errors.Is(err, ErrFailoverRefused) {
			t.Errorf("%s: want a refusal, got %v", name, err)
		}
		if site.maintenance {
			t.Errorf("%s: a refused failover enabled maintenance", name)
		}
	}
	f := &Failover{DataDir: t.TempDir(), Site: newFakeSite()}
	f.running.Lock()
	if _, err := runFailover(t, f, FailoverRequest{To: "eu"}); !errors.Is(err, ErrFailoverBusy) {
		t.Fatalf("concurrent run: %v", err)
	}
	f.running.Unlock()
}

// TestFailoverDryRun changes nothing and names what blocks.
func TestFailoverDryRun(t *testing.T) {
	dir := t.TempDir()
	site := newFakeSite()
	site.inFlight = []string{"group/p (http, dev)"}
	site.notSynced = []string{"eu: 3 repositories pending, 0 failed"}
	f := &Failover{DataDir: dir, Site: site}
	evs, err := runFailover(t, f, FailoverRequest{To: "eu", DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	var plan, blockers int
	for _, e := range evs {
		switch e.Phase {
		case PhasePlan:
			plan++
		case PhaseBlocker:
			blockers++
		}
	}
	if plan != 5 || blockers != 2 || site.maintenance {
		t.Fatalf("plan %d, blockers %d, maintenance %v: %+v", plan, blockers, site.maintenance, evs)
	}
	if _, ok, _ := ReadFailover(dir); ok {
		t.Fatal("a dry run wrote a record")
	}
}
