package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gitgate/gitgate/api"
	"github.com/gitgate/gitgate/audit"
	"github.com/gitgate/gitgate/geo"
	"github.com/gitgate/gitgate/gitgate"
)

// Execute runs the gate until ctx is done. When a planned Geo failover
// switches this site's role (geo.Follower.OnRoleChange, or the failover
// step that demotes this primary), the gate shuts down gracefully and
// starts again in the role its role file now holds, on the same addresses:
// no manual restart.
func (s *serveCmd) Execute(ctx context.Context) error {
	for {
		inner, cancel := context.WithCancel(ctx)
		var switched atomic.Bool
		s.switchRole = func() {
			if switched.CompareAndSwap(false, true) {
				s.log.Warn("geo: the site's role changed; restarting the gate in its new role")
				cancel()
			}
		}
		err := s.executeOnce(inner)
		cancel()
		if ctx.Err() != nil || !switched.Load() {
			return err
		}
		if err != nil {
			s.log.Error("geo: the gate stopped with an error before its role switch", "err", err)
		}
	}
}

// requestRoleSwitch restarts the gate in the role its role file holds.
func (s *serveCmd) requestRoleSwitch() {
	if s.switchRole != nil {
		s.switchRole()
	}
}

// effectiveGeo is the Geo role this start runs: the flags, unless a planned
// failover changed the role since (the role file): a site it repointed
// follows the primary the file names, and a secondary it promoted runs as
// the primary (with its geo.yaml).
func (s *serveCmd) effectiveGeo(g *gate) (geoOptions, error) {
	o := s.geo
	if o.role == geoNone {
		return o, nil
	}
	store, err := s.roleStore(g)
	if err != nil {
		return o, err
	}
	rec, ok, err := store.LoadRole(context.Background())
	if err != nil || !ok {
		return o, err
	}
	switch {
	case rec.Role == geo.RoleSecondary && rec.Follow != nil:
		if rec.Node == "" {
			return o, fmt.Errorf("%s: a site that follows another needs a node name", geo.RoleFileName)
		}
		s.log.Info("geo: following the primary named in the site's role record (a planned failover repointed this site)",
			"primary", rec.Follow.URL, "term", rec.Term.String())
		o.role = geoSecondary
		o.confirmPrimary = false
		o.secondary.PrimaryURL, o.secondary.SecretFile, o.secondary.NodeName = rec.Follow.URL, rec.Follow.SecretFile, rec.Node
		if !filepath.IsAbs(o.secondary.SecretFile) { // a database site's record: this gate's data dir
			o.secondary.SecretFile = filepath.Join(s.dataDir, o.secondary.SecretFile)
		}
	case rec.Role == geo.RolePrimary && o.role == geoSecondary && rec.Node != "" && rec.Node == o.secondary.NodeName && rec.Primary == rec.Node:
		s.log.Info("geo: this site was promoted; running as the primary", "term", rec.Term.String())
		o.role = geoPrimary
		o.secondary = geo.SecondaryOptions{NodeName: rec.Node}
	}
	return o, nil
}

// failoverSite is the running gate as the failover step machine sees it.
type failoverSite struct {
	s  *serveCmd
	g  *gate
	gs *geoSite
}

func (f *failoverSite) Role() geo.RoleRecord {
	if f.gs.guard != nil {
		return f.gs.guard.Record()
	}
	// A site demoted by the failover (now a secondary): the site's record.
	store, err := f.s.roleStore(f.g)
	if err != nil {
		return geo.RoleRecord{}
	}
	rec, _, _ := store.LoadRole(context.Background())
	return rec
}

func (f *failoverSite) Secondaries() []string {
	if f.gs.verifier == nil {
		return nil
	}
	return f.gs.verifier.Nodes()
}

func (f *failoverSite) Maintenance() (bool, error) {
	snap := f.g.live.Current()
	return snap.State.Enabled, snap.Err
}

func (f *failoverSite) SetMaintenance(ctx context.Context, on bool, message string) error {
	old := f.g.live.Current().State
	ch := gitgate.Change{Enabled: &on, By: "geo failover"}
	if on {
		ch.Message = &message
	}
	st, err := f.g.fenced.Apply(ctx, ch)
	if err != nil {
		return fmt.Errorf("maintenance: %w", err)
	}
	f.g.live.Reload()
	f.record(audit.Event{Action: "maintenance.update", Actor: "geo failover", Transport: "geo", Old: api.AuditState(old), New: api.AuditState(st)})
	return nil
}

func (f *failoverSite) InFlight(ctx context.Context) ([]string, error) {
	if pushes, ok, err := f.g.sitePushes(ctx); ok {
		// A site of several gates: every gate's pushes count.
		var out []string
		for _, p := range pushes {
			out = append(out, fmt.Sprintf("%s %s by %s over %s on gate %s, running %s", gitgate.ReceivePack.Subcommand(), p.Repo, p.User,
				p.Transport, p.Gate, time.Since(p.Started).Round(time.Millisecond)))
		}
		return out, err
	}
	var out []string
	for _, r := range f.g.tracker.InFlight() {
		if r.Service.IsWrite() {
			who := "anonymous"
			if r.User != nil {
				who = r.User.Name
			}
			out = append(out, fmt.Sprintf("%s %s by %s over %s, running %s", r.Service.Subcommand(), r.Repo, who, r.Transport,
				time.Since(r.Started).Round(time.Millisecond)))
		}
	}
	return out, nil
}

func (f *failoverSite) CheckTarget(ctx context.Context, node string) (geo.SyncCheck, error) {
	if f.gs.primary == nil || f.gs.feed == nil {
		return geo.SyncCheck{}, errors.New("this site is not a running Geo primary")
	}
	c, err := f.gs.primary.CheckTarget(ctx, f.gs.feed, node)
	if err != nil {
		return c, err
	}
	if _, err := f.targetSite(node); err != nil {
		c.Blockers = append(c.Blockers, err.Error())
	}
	return c, nil
}

// targetSite is node's entry in geo.yaml, with the URL a failover needs.
func (f *failoverSite) targetSite(node string) (geo.SecondarySite, error) {
	cfg, err := geo.LoadConfig(f.s.dataDir)
	if err != nil {
		return geo.SecondarySite{}, err
	}
	site, ok := cfg.Site(node)
	switch {
	case !ok:
		return site, fmt.Errorf("%s is not listed in %s", node, geo.ConfigFileName)
	case site.URL == "":
		return site, fmt.Errorf("%s has no url in %s: this site and the other secondaries could not reach it", node, geo.ConfigFileName)
	}
	return site, nil
}

func (f *failoverSite) OrderPromotion(t geo.Term, reopen bool) error {
	site, err := f.targetSite(t.Primary)
	if err != nil {
		return err
	}
	if f.g.shared != nil && f.gs.guard != nil {
		// Every gate of the site carries the order (serve_db_geo.go).
		rec := f.gs.guard.Record()
		rec.Handover = &geo.Handover{Term: t, Reopen: reopen, URL: site.URL}
		rec.Updated = time.Now().UTC()
		if err := f.gs.guard.Save(context.Background(), rec); err != nil {
			return fmt.Errorf("share the promotion order with the site's gates: %w", err)
		}
	}
	return f.gs.primary.OrderPromotion(t, reopen, site.URL)
}

func (f *failoverSite) Unannounced(t geo.Term) []string {
	if f.gs.primary == nil {
		return nil
	}
	local := f.gs.primary.Unannounced(t)
	if f.g.shared == nil || len(local) == 0 {
		return local
	}
	// Any gate of the site may have told them.
	nodes, err := f.g.shared.db.GeoNodes(context.Background())
	if err != nil {
		return local
	}
	told := map[string]bool{}
	for _, n := range nodes {
		told[n.Name] = n.AnnouncedEpoch >= t.Epoch
	}
	var out []string
	for _, n := range local {
		if !told[n] {
			out = append(out, n)
		}
	}
	return out
}

func (f *failoverSite) Follow(ctx context.Context, t geo.Term) error {
	site, err := f.targetSite(t.Primary)
	if err != nil {
		return err
	}
	rec := f.Role()
	rec.Term, rec.Role = t, geo.RoleSecondary
	rec.Updated, rec.Reason = time.Now().UTC(), "demoted by a planned failover to "+t.Primary
	rec.Follow = &geo.FollowTarget{URL: site.URL, SecretFile: site.SecretFile}
	if f.g.shared != nil {
		// The record is every gate's: a secret file in the data dir is
		// named relative to it, so each gate reads its own copy.
		if rel, err := filepath.Rel(f.s.dataDir, site.SecretFile); err == nil && filepath.IsLocal(rel) {
			rec.Follow.SecretFile = rel
		}
	}
	if f.gs.guard != nil {
		return f.gs.guard.Save(ctx, rec) // the site's role store
	}
	return geo.WriteRole(f.s.dataDir, rec)
}

func (f *failoverSite) NewPrimary(t geo.Term) geo.PrimaryView {
	if f.gs.follower == nil {
		return geo.PrimaryView{}
	}
	st := f.gs.follower.Status()
	term := f.gs.follower.Term()
	if f.g.shared != nil {
		// A secondary site on a database: the elected gate follows (the
		// status is the site's); the term is the site's role record.
		rec := f.Role()
		term = &rec.Term
	}
	snap := f.g.live.Current()
	return geo.PrimaryView{
		Following:   st.Connected && term != nil && *term == t,
		Maintenance: snap.Err != nil || snap.State.Enabled,
	}
}

func (f *failoverSite) Audit(action string, fields map[string]any) {
	detail, _ := json.Marshal(fields)
	f.record(audit.Event{Action: action, Actor: "geo failover", Transport: "geo", Detail: string(detail)})
}

func (f *failoverSite) record(ev audit.Event) {
	if f.g.audit == nil {
		return
	}
	if err := f.g.audit.Record(ev); err != nil {
		f.s.log.Error("audit log write failed", "err", err)
	}
}

// failoverHandler serves POST geo.FailoverPath (admin only): it runs the
// failover step machine on this site and streams its progress as JSON
// lines (geo.FailoverEvent), ending with a "done", "restart" or "error"
// line. The request's end (the admin's Ctrl-C) stops the run at a
// consistent, resumable point.
func (gs *geoSite) failoverHandler(f *geo.Failover, switchRole func(), log func(msg string, args ...any)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, err := parseFailoverRequest(r)
		if err != nil {
			writeJSONMessage(w, http.StatusBadRequest, "400 Bad request - "+err.Error())
			return
		}
		if u := api.UserFrom(r.Context()); u != nil {
			req.By = u.Name
		}
		log("geo failover requested", "user", req.By, "to", req.To, "dry_run", req.DryRun, "abort", req.Abort, "remote_addr", r.RemoteAddr)
		w.Header().Set("Content-Type", "application/x-ndjson")
		w.WriteHeader(http.StatusOK)
		var mu sync.Mutex
		enc := json.NewEncoder(w)
		emit := func(e geo.FailoverEvent) {
			mu.Lock()
			defer mu.Unlock()
			enc.Encode(e)
			if fl, ok := w.(http.Flusher); ok {
				fl.Flush()
			}
		}
		err = f.Run(r.Context(), req, emit)
		switch {
		case errors.Is(err, geo.ErrRestarting):
			defer switchRole() // once this answer is complete
		case err != nil:
			emit(geo.FailoverEvent{Phase: geo.PhaseError, Text: err.Error()})
		}
	})
}

// parseFailoverRequest reads the form: to, message, timeout (a Go
// duration), dry_run, keep_maintenance, abort.
func parseFailoverRequest(r *http.Request) (geo.FailoverRequest, error) {
	r.Body = http.MaxBytesReader(nil, r.Body, 8<<10)
	if err := r.ParseForm(); err != nil {
		return geo.FailoverRequest{}, errors.New("invalid form")
	}
	req := geo.FailoverRequest{To: r.Form.Get("to"), Message: r.Form.Get("message")}
	if req.To != "" {
		if err := geo.ValidateNodeName(req.To); err != nil {
			return req, err
		}
	}
	if err := gitgate.ValidateMessage(req.Message); err != nil {
		return req, err
	}
	if t := r.Form.Get("timeout"); t != "" {
		d, err := time.ParseDuration(t)
		if err != nil || d <= 0 || d > time.Hour {
			return req, errors.New("timeout must be a duration up to 1h")
		}
		req.Timeout = d
	}
	for name, dst := range map[string]*bool{"dry_run": &req.DryRun, "keep_maintenance": &req.KeepMaintenance, "abort": &req.Abort} {
		if v := r.Form.Get(name); v != "" {
			b, err := strconv.ParseBool(v)
			if err != nil {
				return req, fmt.Errorf("%s must be true or false", name)
			}
			*dst = b
		}
	}
	return req, nil
}

func writeJSONMessage(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"message": msg})
}

// reopenAfterFailover, on a primary promoted by a planned failover (its
// role file says reopen), disables maintenance once every secondary has
// confirmed its term (the old primary among them), then clears the flag.
func (s *serveCmd) reopenAfterFailover(g *gate, gs *geoSite) func(context.Context) error {
	return func(ctx context.Context) error {
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			rec := gs.guard.Record()
			if !rec.Reopen || rec.Role != geo.RolePrimary {
				return nil
			}
			if gs.guard.Refusal() == nil {
				site := &failoverSite{s: s, g: g, gs: gs}
				if err := site.SetMaintenance(ctx, false, ""); err != nil {
					s.log.Error("geo failover: cannot reopen", "err", err)
				} else {
					if err := gs.guard.ClearReopen(); err != nil {
						s.log.Error("geo failover: reopened, but the role file was not updated", "err", err)
					}
					site.Audit("geo.failover.reopen", map[string]any{"term": rec.Term.String()})
					s.log.Info("geo failover: every secondary confirmed the new term; maintenance disabled", "term", rec.Term.String())
					return nil
				}
			}
			select {
			case <-ctx.Done():
				return nil
			case <-t.C:
			}
		}
	}
}

// wireFailover gives the site its failover step machine and lets a
// planned failover switch its role at run time: the follower's role change
// and the demoting step restart the gate; a promoted primary reopens by
// itself once confirmed.
func (s *serveCmd) wireFailover(g *gate, gs *geoSite) {
	gs.failover = &geo.Failover{DataDir: s.dataDir, Site: &failoverSite{s: s, g: g, gs: gs}}
	gs.switchRole = s.requestRoleSwitch
	gs.logInfo = s.log.Info
	if gs.follower != nil {
		gs.follower.OnRoleChange = s.requestRoleSwitch
	}
	if gs.guard != nil && gs.guard.Record().Reopen {
		g.background = append(g.background, s.reopenAfterFailover(g, gs))
	}
}

// failoverHandlers registers geo.FailoverPath (admin only), on both roles:
// a demoted site finishes the failover's last step as a secondary.
func (gs *geoSite) failoverHandlers(register func(string, http.Handler), admin func(http.Handler) http.Handler) {
	if gs == nil || gs.failover == nil {
		return
	}
	register("POST "+geo.FailoverPath, admin(gs.failoverHandler(gs.failover, gs.switchRole, gs.logInfo)))
}
