package geo_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gitgate/gitgate/geo"
	"github.com/gitgate/gitgate/gitgate"
)

// fakeOldPrimary answers every status poll at once with what answer
// returns for the term the secondary presented.
type fakeOldPrimary struct {
	srv    *httptest.Server
	polls  atomic.Int64
	answer atomic.Pointer[func(presented *geo.Term) geo.StatusResponse]
}

func startFakeOldPrimary(t *testing.T) *fakeOldPrimary {
	p := &fakeOldPrimary{}
	v := geo.NewVerifier(map[string][]byte{"eu": secretEU})
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := v.VerifyRequest(r, geo.ScopeStatus, "")
		if err != nil || r.URL.Path != geo.StatusPath {
			http.Error(w, "no", http.StatusNotFound)
			return
		}
		resp := (*p.answer.Load())(c.Term)
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(resp)
		p.polls.Add(1)
	}))
	t.Cleanup(p.srv.Close)
	return p
}

func (p *fakeOldPrimary) set(f func(presented *geo.Term) geo.StatusResponse) { p.answer.Store(&f) }

// waitPolls lets the follower take n more answers.
func (p *fakeOldPrimary) waitPolls(t *testing.T, n int64) {
	t.Helper()
	from := p.polls.Load()
	mustWaitFor(t, "polls", func() bool { return p.polls.Load() >= from+n })
}

func signed(t *testing.T, secret []byte, c geo.Claims) string {
	t.Helper()
	h, err := geo.Sign(secret, "old", c, 0)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// TestFollowerFailoverOrders: a secondary takes a promotion order or a new
// primary's announcement only when signed with its own secret by the site
// it follows, for the next epoch and (an order) its own node name, with a
// valid URL (an announcement); it switches its role once the old primary
// took the new term.
func TestFollowerFailoverOrders(t *testing.T) {
	old := geo.Term{Epoch: 0, Primary: "old"}
	next := geo.Term{Epoch: 1, Primary: "eu"}
	state := gitgate.State{Version: 1}
	base := func(term geo.Term) geo.StatusResponse {
		return geo.StatusResponse{State: state, Term: &term, Node: "old"}
	}
	bad := map[string]func() geo.StatusResponse{
		"order signed with another secret": func() geo.StatusResponse {
			r := base(old)
			r.Promote = signed(t, secretAsia, geo.Claims{Scope: geo.ScopePromote, Term: &next})
			return r
		},
		"order for another node": func() geo.StatusResponse {
			r := base(old)
			r.Promote = signed(t, secretEU, geo.Claims{Scope: geo.ScopePromote, Term: &geo.Term{Epoch: 1, Primary: "asia"}})
			return r
		},
		"order skipping epochs": func() geo.StatusResponse {
			r := base(old)
			r.Promote = signed(t, secretEU, geo.Claims{Scope: geo.ScopePromote, Term: &geo.Term{Epoch: 9, Primary: "eu"}})
			return r
		},
		"order with the wrong scope": func() geo.StatusResponse {
			r := base(old)
			r.Promote = signed(t, secretEU, geo.Claims{Scope: geo.ScopeAnnounce, Term: &next})
			return r
		},
		"announcement with a bad URL": func() geo.StatusResponse {
			r := base(old)
			r.Announce = signed(t, secretEU, geo.Claims{Scope: geo.ScopeAnnounce, Term: &geo.Term{Epoch: 1, Primary: "asia"}, URL: "file:///etc"})
			return r
		},
		"announcement signed with another secret": func() geo.StatusResponse {
			r := base(old)
			r.Announce = signed(t, secretAsia, geo.Claims{Scope: geo.ScopeAnnounce, Term: &geo.Term{Epoch: 1, Primary: "asia"}, URL: "http://127.0.0.1:1"})
			return r
		},
	}
	for name, answer := range bad {
		t.Run(name, func(t *testing.T) {
			p := startFakeOldPrimary(t)
			p.set(func(*geo.Term) geo.StatusResponse { return answer() })
			s := newSite(t)
			f, err := geo.NewFollower(followerOptions(t, p.srv.URL, secretEU), s.store, s.live, testLog())
			if err != nil {
				t.Fatal(err)
			}
			var switched atomic.Bool
			f.OnRoleChange = func() { switched.Store(true) }
			rf := runFollower(t, f)
			p.waitPolls(t, 5)
			rf()
			rec, _, _ := geo.ReadRole(s.dataDir)
			if switched.Load() || rec.Role == geo.RolePrimary || rec.Follow != nil {
				t.Fatalf("took a bad order: switched=%v role %+v", switched.Load(), rec)
			}
		})
	}

	t.Run("promotion", func(t *testing.T) {
		p := startFakeOldPrimary(t)
		p.set(func(presented *geo.Term) geo.StatusResponse {
			if presented != nil && *presented == next {
				return base(next) // demoted: the acknowledgement
			}
			r := base(old)
			r.Promote = signed(t, secretEU, geo.Claims{Scope: geo.ScopePromote, Term: &next, Reopen: true})
			return r
		})
		s := newSite(t)
		f, err := geo.NewFollower(followerOptions(t, p.srv.URL, secretEU), s.store, s.live, testLog())
		if err != nil {
			t.Fatal(err)
		}
		switched := make(chan struct{})
		f.OnRoleChange = func() { close(switched) }
		stop := runFollower(t, f)
		defer stop()
		waitClosed(t, switched)
		rec, ok, err := geo.ReadRole(s.dataDir)
		if err != nil || !ok || rec.Role != geo.RolePrimary || rec.Term != next || !rec.Reopen || rec.Node != "eu" {
			t.Fatalf("role after the promotion: %+v %v %v", rec, ok, err)
		}
	})

	t.Run("announcement", func(t *testing.T) {
		p := startFakeOldPrimary(t)
		asia := geo.Term{Epoch: 1, Primary: "asia"}
		p.set(func(*geo.Term) geo.StatusResponse {
			r := base(asia)
			r.Announce = signed(t, secretEU, geo.Claims{Scope: geo.ScopeAnnounce, Term: &asia, URL: "http://127.0.0.1:9/"})
			return r
		})
		s := newSite(t)
		opts := followerOptions(t, p.srv.URL, secretEU)
		f, err := geo.NewFollower(opts, s.store, s.live, testLog())
		if err != nil {
			t.Fatal(err)
		}
		switched := make(chan struct{})
		f.OnRoleChange = func() { close(switched) }
		stop := runFollower(t, f)
		defer stop()
		waitClosed(t, switched)
		rec, _, _ := geo.ReadRole(s.dataDir)
		if rec.Follow == nil || rec.Follow.URL != "http://127.0.0.1:9" || rec.Follow.SecretFile != opts.SecretFile || rec.Term != asia || rec.Role != geo.RoleSecondary {
			t.Fatalf("role after the announcement: %+v", rec)
		}
	})
}

// runFollower runs f until the returned stop is called (or the test ends).
func runFollower(t *testing.T, f *geo.Follower) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); f.Run(ctx) }()
	stop = func() { cancel(); <-done }
	t.Cleanup(func() { cancel(); <-done })
	return stop
}

func waitClosed(t *testing.T, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(testDeadline):
		t.Fatal("the follower did not switch its role")
	}
}
