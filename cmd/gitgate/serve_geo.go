package main

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/urfave/cli/v2"

	"github.com/gitgate/gitgate/geo"
	"github.com/gitgate/gitgate/gitgate"
	"github.com/gitgate/gitgate/hooks"
	"github.com/gitgate/gitgate/httpgit"
	"github.com/gitgate/gitgate/lfs"
	"github.com/gitgate/gitgate/pgstore"
)

// Geo roles.
const (
	geoNone      = ""
	geoPrimary   = "primary"
	geoSecondary = "secondary"
)

func geoFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{
			Name:    "geo-role",
			Usage:   "Geo role of this site: primary or secondary (default: no Geo)",
			EnvVars: []string{"GITGATE_GEO_ROLE"},
		},
		&cli.StringFlag{
			Name:    "geo-primary-url",
			Usage:   "secondary: the primary site's base URL (its smart HTTP address)",
			EnvVars: []string{"GITGATE_GEO_PRIMARY_URL"},
		},
		&cli.StringFlag{
			Name:    "geo-node-name",
			Usage:   "this site's node name, as listed in the primary's geo.yaml (a primary needs one only to be named in failover terms)",
			EnvVars: []string{"GITGATE_GEO_NODE_NAME"},
		},
		&cli.StringFlag{
			Name:    "geo-secret-file",
			Usage:   "secondary: file holding the secret shared with the primary (mode 0600, 32 bytes or more)",
			EnvVars: []string{"GITGATE_GEO_SECRET_FILE"},
		},
		&cli.BoolFlag{
			Name:    "geo-confirm-primary",
			Usage:   "primary: accept pushes at once after a start, without waiting for every secondary in geo.yaml to confirm this site's failover term (only when no other site can have been promoted)",
			EnvVars: []string{"GITGATE_GEO_CONFIRM_PRIMARY"},
		},
		&cli.IntFlag{
			Name:    "geo-parallel",
			Usage:   "secondary: repositories fetched from the primary at once",
			Value:   geo.DefaultParallel,
			EnvVars: []string{"GITGATE_GEO_PARALLEL"},
		},
		&cli.DurationFlag{
			Name:    "geo-reconcile-interval",
			Usage:   "secondary: how often every repository's refs are compared with the primary's (changes arrive at once; this catches anything missed)",
			Value:   geo.DefaultReconcileInterval,
			EnvVars: []string{"GITGATE_GEO_RECONCILE_INTERVAL"},
		},
		&cli.DurationFlag{
			Name:    "geo-delete-delay",
			Usage:   "secondary: how long a repository must be gone from the primary before its copy moves to <data-dir>/" + geo.TrashDirName,
			Value:   geo.DefaultDeleteDelay,
			EnvVars: []string{"GITGATE_GEO_DELETE_DELAY"},
		},
		&cli.DurationFlag{
			Name:    "geo-trash-retention",
			Usage:   "secondary: how long the trash keeps a removed repository, and a Git LFS object no repository links",
			Value:   geo.DefaultTrashRetention,
			EnvVars: []string{"GITGATE_GEO_TRASH_RETENTION"},
		},
		&cli.DurationFlag{
			Name:    "geo-scan-interval",
			Usage:   "primary: how often the repositories are listed to find those created or removed without a push",
			Value:   10 * time.Second,
			EnvVars: []string{"GITGATE_GEO_SCAN_INTERVAL"},
		},
		&cli.DurationFlag{
			Name:    "geo-unlisted-after",
			Usage:   "primary with --database-url: a secondary's registry row is removed once no gate of the site has listed it in its geo.yaml for this long",
			Value:   pgstore.DefaultGeoUnlistedAfter,
			EnvVars: []string{"GITGATE_GEO_UNLISTED_AFTER"},
			Hidden:  true,
		},
	}
}

// geoOptions are the Geo flags of serve.
type geoOptions struct {
	role           string
	confirmPrimary bool
	secondary      geo.SecondaryOptions
	replica        geo.ReplicaOptions
	scanInterval   time.Duration
	unlistedAfter  time.Duration // the registry's prune bound (serve_db_geo.go)
}

func geoOptionsFrom(c *cli.Context) (geoOptions, error) {
	o := geoOptions{role: c.String("geo-role"), secondary: geo.SecondaryOptions{
		PrimaryURL: c.String("geo-primary-url"),
		NodeName:   c.String("geo-node-name"),
		SecretFile: c.String("geo-secret-file"),
	}}
	o.replica = geo.ReplicaOptions{
		Parallel:          c.Int("geo-parallel"),
		ReconcileInterval: c.Duration("geo-reconcile-interval"),
		DeleteDelay:       c.Duration("geo-delete-delay"),
		TrashRetention:    c.Duration("geo-trash-retention"),
	}
	o.scanInterval = c.Duration("geo-scan-interval")
	o.confirmPrimary = c.Bool("geo-confirm-primary")
	o.unlistedAfter = c.Duration("geo-unlisted-after")
	if o.replica.Parallel < 1 || o.replica.ReconcileInterval <= 0 || o.replica.DeleteDelay <= 0 ||
		o.replica.TrashRetention <= 0 || o.scanInterval <= 0 || o.unlistedAfter <= 0 {
		return o, usageError{fmt.Errorf("--geo-parallel and the --geo-* durations must be positive")}
	}
	switch o.role {
	case geoNone, geoPrimary:
		nodeOnly := geo.SecondaryOptions{NodeName: o.secondary.NodeName}
		if o.role == geoNone {
			nodeOnly = geo.SecondaryOptions{}
		}
		if o.secondary != nodeOnly {
			return o, usageError{fmt.Errorf("--geo-primary-url and --geo-secret-file need --geo-role secondary")}
		}
		if o.secondary.NodeName != "" {
			if err := geo.ValidateNodeName(o.secondary.NodeName); err != nil {
				return o, usageError{err}
			}
		}
		if o.confirmPrimary && o.role != geoPrimary {
			return o, usageError{fmt.Errorf("--geo-confirm-primary needs --geo-role primary")}
		}
	case geoSecondary:
		if o.confirmPrimary {
			return o, usageError{fmt.Errorf("--geo-confirm-primary needs --geo-role primary")}
		}
	default:
		return o, usageError{fmt.Errorf("invalid --geo-role %q: want primary or secondary", o.role)}
	}
	return o, nil
}

// geoSite is this site's Geo part, on either role.
type geoSite struct {
	primary  *geo.Primary
	verifier *geo.Verifier
	follower *geo.Follower
	feed     *geo.Feed       // primary: the change log
	replica  *geo.Replicator // secondary: the replication
	site     *siteSecondary  // secondary on a database: the election
	lfsStore *lfs.Store      // primary: the LFS objects it serves to secondaries
	guard    *geo.Guard      // primary: the failover term and the start-up fence
	access   geo.AccessData  // primary: the access data served to secondaries
	dataDir  string
	failover *geo.Failover // the planned failover's step machine, on both roles
	// switchRole restarts the gate in its new role; logInfo logs.
	switchRole func()
	logInfo    func(string, ...any)
}

// setupGeo prepares the role: the primary reads geo.yaml and its
// secondaries' secrets; a secondary marks its data dir and starts following.
func (s *serveCmd) setupGeo(g *gate) (*geoSite, error) {
	gs, err := s.setupGeoRole(g)
	if gs != nil && err == nil {
		s.wireFailover(g, gs)
	}
	return gs, err
}

// setupGeoRole builds the Geo part of the role this start runs.
func (s *serveCmd) setupGeoRole(g *gate) (*geoSite, error) {
	o, err := s.effectiveGeo(g)
	if err != nil {
		return nil, err
	}
	switch o.role {
	case geoPrimary:
		cfg, err := geo.LoadConfig(s.dataDir)
		if err != nil {
			return nil, err
		}
		secrets, err := cfg.Secrets()
		if err != nil {
			return nil, err
		}
		v := geo.NewVerifier(secrets)
		guard, err := s.primaryGuard(g, v.Nodes())
		if err != nil {
			return nil, err
		}
		s.log.Info("geo primary", "secondaries", v.Nodes())
		// The access data the secondaries replicate: the site's, in the
		// database when its gates share one.
		var acc geo.AccessData = &geo.FileAccess{DataDir: s.dataDir}
		if g.shared != nil {
			acc = &geo.DocumentAccess{Doc: g.shared.db.AccessDocument()}
		}
		feed := geo.NewFeed(g.resolver, s.git, s.dataDir, acc, s.log)
		feed.ScanInterval = s.geo.scanInterval
		p := geo.NewPrimary(g.live, v, s.log)
		p.SetGuard(guard)
		g.policy.Role = guard
		return &geoSite{primary: p, verifier: v, feed: feed, guard: guard, dataDir: s.dataDir, access: acc}, nil
	case geoSecondary:
		if g.shared != nil {
			return s.setupSiteSecondary(g, o)
		}
		f, err := geo.NewFollower(o.secondary, g.store, g.live, s.log)
		if err != nil {
			return nil, err
		}
		if err := geo.WriteSecondaryMarker(s.dataDir, f.Primary(), o.secondary.NodeName); err != nil {
			return nil, err
		}
		s.log.Info("geo secondary", "primary", f.Primary(), "node", o.secondary.NodeName)
		ro := s.geo.replica
		ro.Git, ro.Resolver, ro.DataDir = s.git, g.resolver, s.dataDir
		ro.Access = &geo.FileAccess{DataDir: s.dataDir}
		ro.Prepare = s.prepareReplica
		return &geoSite{follower: f, replica: geo.NewReplicator(f, ro), dataDir: s.dataDir}, nil
	}
	return nil, nil
}

// auth wraps the HTTP authenticator: a primary accepts push tokens from its
// secondaries, on behalf of the user they name.
func (gs *geoSite) auth(next httpgit.Authenticator) httpgit.Authenticator {
	if gs == nil || gs.verifier == nil {
		return next
	}
	return gs.verifier.Authenticator(next)
}

// pushProxy is the secondary's follower, which hands pushes to the primary.
func (gs *geoSite) pushProxy() *geo.Follower {
	if gs == nil {
		return nil
	}
	return gs.follower
}

// readOnly refuses maintenance changes on a secondary and on a demoted
// primary.
func (gs *geoSite) readOnly() (string, bool) {
	if gs != nil && gs.guard != nil {
		return gs.guard.ReadOnly()
	}
	if gs == nil || gs.follower == nil {
		return "", false
	}
	return geo.ChangeOnPrimary(gs.follower.Primary()), true
}

// settingsExtra adds the site's Geo status to the settings answer.
func (gs *geoSite) settingsExtra() map[string]any {
	switch {
	case gs == nil:
		return nil
	case gs.follower != nil:
		return map[string]any{"geo": gs.follower.Status()}
	}
	return map[string]any{"geo": gs.primaryView()}
}

// handlers registers the Geo endpoints: the primary's long-poll (GL-Geo
// tokens) and, on both roles, the admin's view of the nodes.
func (gs *geoSite) handlers(register func(string, http.Handler), admin func(http.Handler) http.Handler) {
	switch {
	case gs == nil:
	case gs.primary != nil:
		register("GET "+geo.StatusPath, gs.primary.StatusHandler())
		register("GET "+geo.NodesPath, admin(gs.primary.NodesHandler()))
		register("GET "+geo.EventsPath, gs.primary.EventsHandler(gs.feed))
		register("GET "+geo.RepositoriesPath, gs.primary.RepositoriesHandler(gs.feed))
		register("GET "+geo.AccessPath, gs.primary.AccessHandler(gs.access))
		register("POST "+geo.ReportPath, gs.primary.ReportHandler())
		gs.lfsHandlers(register)
	case gs.follower != nil:
		register("GET "+geo.NodesPath, admin(gs.follower.SelfHandler()))
	}
	gs.failoverHandlers(register, admin)
}

// run returns what runs beside the servers: the follower, or the primary's
// status file. beginShutdown ends the primary's long-polls so that they do
// not hold the HTTP server for the whole grace period.
func (gs *geoSite) run(dataDir string) (run func(context.Context) error, beginShutdown func()) {
	switch {
	case gs == nil:
		return func(ctx context.Context) error { geo.TrimChangeJournal(ctx, dataDir); return nil }, func() {}
	case gs.site != nil:
		return gs.site.run, func() {}
	case gs.follower != nil:
		return func(ctx context.Context) error {
			done := make(chan struct{})
			go func() { defer close(done); gs.replica.Run(ctx) }()
			go geo.TrimChangeJournal(ctx, dataDir)
			gs.follower.Run(ctx)
			<-done
			return nil
		}, func() {}
	}
	return func(ctx context.Context) error {
		done := make(chan struct{})
		go func() { defer close(done); gs.feed.Run(ctx) }()
		gs.primary.WriteStatusFile(ctx, dataDir)
		<-done
		return nil
	}, gs.primary.Shutdown
}

// collectors are the Geo metrics.
func (gs *geoSite) collectors() []prometheus.Collector {
	switch {
	case gs == nil:
		return nil
	case gs.follower != nil:
		status := gs.follower.Status
		return []prometheus.Collector{
			&replicationCollector{status: gs.replicationStatus},
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "gitgate_geo_secondary_connected",
				Help: "1 while this secondary follows the primary's state live, else 0.",
			}, func() float64 { return boolGauge(status().Connected) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "gitgate_geo_secondary_stale_seconds",
				Help: "How long this secondary's view of the primary's state may be out of date (0 while connected).",
			}, func() float64 { return status().Stale.Seconds() }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "gitgate_geo_secondary_state_version",
				Help: "The primary's state version this secondary last mirrored.",
			}, func() float64 { return float64(status().Version) }),
		}
	}
	return []prometheus.Collector{&nodesCollector{primary: gs.primary}, &replicationCollector{status: gs.replicationStatus}}
}

func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// nodesCollector reports each secondary as the primary sees it.
type nodesCollector struct{ primary *geo.Primary }

var (
	nodeConnectedDesc = prometheus.NewDesc("gitgate_geo_node_connected",
		"1 while the secondary holds a status poll open on this primary.", []string{"node"}, nil)
	nodeLagDesc = prometheus.NewDesc("gitgate_geo_node_lag_versions",
		"How many state versions the secondary is behind.", []string{"node"}, nil)
	nodeContactDesc = prometheus.NewDesc("gitgate_geo_node_last_contact_timestamp_seconds",
		"When the secondary last called (Unix time; 0 if never).", []string{"node"}, nil)
)

func (c *nodesCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- nodeConnectedDesc
	ch <- nodeLagDesc
	ch <- nodeContactDesc
}

func (c *nodesCollector) Collect(ch chan<- prometheus.Metric) {
	for _, n := range c.primary.Nodes() {
		contact := 0.0
		if !n.LastContact.IsZero() {
			contact = float64(n.LastContact.UnixNano()) / 1e9
		}
		ch <- prometheus.MustNewConstMetric(nodeConnectedDesc, prometheus.GaugeValue, boolGauge(n.Connected), n.Name)
		ch <- prometheus.MustNewConstMetric(nodeLagDesc, prometheus.GaugeValue, float64(n.Lag), n.Name)
		ch <- prometheus.MustNewConstMetric(nodeContactDesc, prometheus.GaugeValue, contact, n.Name)
	}
}

// prepareReplica installs the gate's hooks into a repository the secondary
// has just created for the primary's, as "gitgate repo create" does.
func (s *serveCmd) prepareReplica(_ context.Context, repo gitgate.Repo) error {
	if !s.installHooks {
		return nil
	}
	bin, err := selfBinary()
	if err != nil {
		return fmt.Errorf("hooks: find the gitgate binary: %w", err)
	}
	in, err := hooks.NewInstaller(hooks.Script{Binary: bin, DataDir: s.dataDir})
	if err != nil {
		return fmt.Errorf("hooks: %w", err)
	}
	if _, err := in.Install(repo.Path); err != nil {
		return fmt.Errorf("hooks for %s: %w", repo.Name, err)
	}
	return nil
}

// Replication metrics, on both roles: per node (the secondaries on the
// primary, the site itself on a secondary).
var (
	geoReposDesc = prometheus.NewDesc("gitgate_geo_repositories",
		"Repositories of a Geo secondary by replication state (synced = verified equal to the primary's).",
		[]string{"node", "state"}, nil)
	geoLagDesc = prometheus.NewDesc("gitgate_geo_replication_lag_seconds",
		"Age of the oldest change on the primary that the secondary has not replicated yet (0 when caught up).",
		[]string{"node"}, nil)
)

// replicationCollector reports gitgate_geo_repositories and
// gitgate_geo_replication_lag_seconds from status, node name → status.
type replicationCollector struct {
	status func() map[string]*geo.ReplicationStatus
}

func (c *replicationCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- geoReposDesc
	ch <- geoLagDesc
}

func (c *replicationCollector) Collect(ch chan<- prometheus.Metric) {
	for node, st := range c.status() {
		if st == nil {
			continue
		}
		ch <- prometheus.MustNewConstMetric(geoReposDesc, prometheus.GaugeValue, float64(st.Synced), node, geo.StateSynced)
		ch <- prometheus.MustNewConstMetric(geoReposDesc, prometheus.GaugeValue, float64(st.Pending), node, geo.StatePending)
		ch <- prometheus.MustNewConstMetric(geoReposDesc, prometheus.GaugeValue, float64(st.Failed), node, geo.StateFailed)
		ch <- prometheus.MustNewConstMetric(geoLagDesc, prometheus.GaugeValue, st.LagSeconds, node)
	}
}

// replicationStatus is the collector's source for this site.
func (gs *geoSite) replicationStatus() map[string]*geo.ReplicationStatus {
	out := map[string]*geo.ReplicationStatus{}
	if gs.follower != nil {
		st := gs.follower.Status() // the site's, on a database
		out[st.Node] = st.Replication
		return out
	}
	for _, n := range gs.primary.Nodes() {
		out[n.Name] = n.Replication
	}
	return out
}

// readyDetails adds the primary's view of its secondaries (replication
// included) to the readiness answer; nil on other roles.
func (gs *geoSite) readyDetails() func() any {
	if gs == nil || gs.primary == nil {
		return nil
	}
	return func() any { return map[string]any{"geo": gs.primaryView()} }
}
