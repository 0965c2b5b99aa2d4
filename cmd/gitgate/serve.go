package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/gitgate/gitgate/access"
	"github.com/gitgate/gitgate/api"
	"github.com/gitgate/gitgate/audit"
	"github.com/gitgate/gitgate/gitgate"
	"github.com/gitgate/gitgate/hooks"
	"github.com/gitgate/gitgate/httpgit"
	"github.com/gitgate/gitgate/internal/unixsock"
	"github.com/gitgate/gitgate/lfs"
	"github.com/gitgate/gitgate/metrics"
	"github.com/gitgate/gitgate/sshd"
)

// SocketName is the local admin socket in the data dir. The local CLI uses
// it to ask a running gate what is in flight; file permissions (0600, owner
// only) are its authentication.
const SocketName = "gitgate.sock"

func serveCommand() *cli.Command {
	return &cli.Command{
		Name:  "serve",
		Usage: "serve the repositories over smart HTTP and SSH and enforce maintenance mode",
		Description: "Serves the bare repositories under --repos to the users of the access file\n" +
			"(<data-dir>/access.yaml). Pushes are refused while the maintenance state in\n" +
			"the data dir is enabled; changes to it, and to the access file, take effect\n" +
			"without a restart. At start the pre-receive and reference-transaction hooks\n" +
			"are installed in every repository. A push whose client hangs up once its data\n" +
			"is in goes on for at most --push-finish-timeout. SIGINT or SIGTERM stop\n" +
			"accepting work and give running operations --shutdown-grace to finish.\n" +
			"Fetches get their packs through the gate's pack-objects cache (--pack-objects-*):\n" +
			"identical fetches share one generated pack, generations are limited per repository.\n" +
			"With --database-url, the state, users, keys, tokens, rules, audit log and pushes\n" +
			"in flight are the site's, in PostgreSQL, shared with every gate of the site.",
		Flags: append([]cli.Flag{
			reposFlag(),
			&cli.StringFlag{
				Name:    "http-listen",
				Usage:   "address for smart HTTP, the API, metrics and the probes (port 0 picks a free port)",
				Value:   "127.0.0.1:8080",
				EnvVars: []string{"GITGATE_HTTP_LISTEN"},
			},
			&cli.StringFlag{
				Name:    "ssh-listen",
				Usage:   "address for Git over SSH (port 0 picks a free port; empty: no SSH)",
				Value:   "127.0.0.1:2222",
				EnvVars: []string{"GITGATE_SSH_LISTEN"},
			},
			sshHostKeyFlag(),
			&cli.StringFlag{
				Name:    "metrics-listen",
				Usage:   "serve /metrics on this address instead of the HTTP listener",
				EnvVars: []string{"GITGATE_METRICS_LISTEN"},
			},
			&cli.DurationFlag{
				Name:    "shutdown-grace",
				Usage:   "how long running clones and pushes may go on after SIGINT/SIGTERM",
				Value:   30 * time.Second,
				EnvVars: []string{"GITGATE_SHUTDOWN_GRACE"},
			},
			&cli.StringFlag{
				Name:    "git",
				Usage:   "the git binary to run",
				Value:   "git",
				EnvVars: []string{"GITGATE_GIT"},
			},
			&cli.StringSliceFlag{
				Name: "trusted-proxies",
				Usage: "`CIDR`s of proxies in front of the gate (comma list or repeated): their X-Forwarded-For, " +
					"rightmost untrusted hop, names the HTTP client, and with --ssh-proxy-protocol their PROXY header the SSH client",
				EnvVars: []string{"GITGATE_TRUSTED_PROXIES"},
			},
			&cli.BoolFlag{
				Name:    "ssh-proxy-protocol",
				Usage:   "accept a PROXY protocol header (v1 or v2) on SSH connections from --trusted-proxies, as gitlab-sshd does",
				EnvVars: []string{"GITGATE_SSH_PROXY_PROTOCOL"},
			},
			&cli.IntFlag{
				Name:    "signin-max-failures",
				Usage:   "bad HTTP credentials from one client address or for one user name before they are answered 429 (a valid token is never throttled)",
				Value:   10,
				EnvVars: []string{"GITGATE_SIGNIN_MAX_FAILURES"},
			},
			fenceTimeoutFlag(),
			&cli.DurationFlag{
				Name:    "push-finish-timeout",
				Usage:   "how long a push whose client hung up may go on (ref updates, post-receive hook)",
				Value:   gitgate.DefaultPushFinishTimeout,
				EnvVars: []string{"GITGATE_PUSH_FINISH_TIMEOUT"},
			},
			&cli.BoolFlag{
				Name:    "no-hooks",
				Usage:   "do not install the hooks (pre-receive, reference-transaction) into the repositories at start",
				EnvVars: []string{"GITGATE_NO_HOOKS"},
			},
		}, slices.Concat(geoFlags(), limitFlags(), lfsFlags(), packCacheFlags(), databaseFlags())...),
		Action: func(c *cli.Context) error {
			log, err := newLogger(c)
			if err != nil {
				return err
			}
			dir, err := dataDir(c)
			if err != nil {
				return err
			}
			geoOpts, err := geoOptionsFrom(c)
			if err != nil {
				return err
			}
			trusted, err := access.ParseTrustedProxies(c.StringSlice("trusted-proxies"))
			if err != nil {
				return usageError{fmt.Errorf("serve: --trusted-proxies: %w", err)}
			}
			if c.Bool("ssh-proxy-protocol") && trusted == nil {
				return usageError{errors.New("serve: --ssh-proxy-protocol needs --trusted-proxies: only those peers may send a PROXY header")}
			}
			if c.Int("signin-max-failures") < 1 {
				return usageError{errors.New("serve: --signin-max-failures must be at least 1")}
			}
			limits, err := limitOptionsFrom(c)
			if err != nil {
				return err
			}
			lfsOpts, err := lfsOptionsFrom(c)
			if err != nil {
				return err
			}
			packCache, err := packCacheOptionsFrom(c, dir)
			if err != nil {
				return err
			}
			database, err := databaseOptionsFrom(c)
			if err != nil {
				return err
			}
			s := &serveCmd{
				limits:            limits,
				lfs:               lfsOpts,
				packCache:         packCache,
				database:          database,
				trustedProxies:    trusted,
				sshProxyProtocol:  c.Bool("ssh-proxy-protocol"),
				signinMaxFailures: c.Int("signin-max-failures"),
				geo:               geoOpts,
				dataDir:           dir,
				repos:             reposDir(c, dir),
				httpListen:        c.String("http-listen"),
				sshListen:         c.String("ssh-listen"),
				sshHostKeys:       c.StringSlice("ssh-host-key"),
				metricsListen:     c.String("metrics-listen"),
				grace:             c.Duration("shutdown-grace"),
				git:               c.String("git"),
				installHooks:      !c.Bool("no-hooks"),
				fenceTimeout:      c.Duration("fence-timeout"),
				pushFinish:        c.Duration("push-finish-timeout"),
				log:               log,
				stdout:            c.App.Writer,
			}
			return s.Execute(c.Context)
		},
	}
}

// serveCmd is "gitgate serve": it wires the gate's parts together and runs
// the servers until the context ends.
type serveCmd struct {
	dataDir       string
	repos         string
	httpListen    string
	sshListen     string
	sshHostKeys   []string
	metricsListen string
	grace         time.Duration
	git           string
	installHooks  bool
	fenceTimeout  time.Duration
	pushFinish    time.Duration
	geo           geoOptions
	// trustedProxies may name the client (X-Forwarded-For, PROXY header).
	trustedProxies    *access.TrustedProxies
	sshProxyProtocol  bool
	signinMaxFailures int
	limits            limitOptions
	lfs               lfsOptions
	packCache         packCacheOptions
	database          databaseOptions
	log               *slog.Logger
	stdout            io.Writer
	// switchRole restarts the gate in a new Geo role (serve_failover.go).
	switchRole func()
}

// gate holds the parts every front end shares.
type gate struct {
	resolver *gitgate.Resolver
	runner   *gitgate.Runner
	live     *gitgate.LiveState
	store    *gitgate.FileStore
	fenced   *gitgate.FencedStore // store, waiting for ref updates in flight on enable
	users    *access.Live
	policy   *gitgate.Policy
	tracker  *gitgate.Tracker
	limiter  *gitgate.Limiter // git processes, shared by HTTP and SSH
	metrics  *metrics.Metrics
	audit    *audit.Log
	geo      *geoSite    // nil without Geo
	lfs      *lfs.Server // nil when the data dir cannot hold LFS objects
	httpURL  string      // the HTTP listener's URL, once listening
	// shared is the site's database, nil with the data dir's files.
	shared *sharedSite
	// background runs beside the servers until they stop.
	background []func(context.Context) error
}

// executeOnce runs the gate until ctx is done, then shuts down gracefully.
func (s *serveCmd) executeOnce(ctx context.Context) error {
	g, err := s.build(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(s.stdout, "gitgate %s serving %s\n", version, g.resolver.Root())

	packRun, err := s.packObjectsServer(ctx, g)
	if err != nil {
		return err
	}
	geoRun, geoBeginShutdown := g.geo.run(s.dataDir)
	web, err := s.httpServer(g)
	if err != nil {
		return err
	}
	httpLn, err := net.Listen("tcp", s.httpListen)
	if err != nil {
		return fmt.Errorf("http listen: %w", err)
	}
	url := "http://" + httpLn.Addr().String()
	g.httpURL = url
	s.httpListen = httpLn.Addr().String() // a role switch restarts on the same address
	fmt.Fprintf(s.stdout, "http: listening on %s\n", url)
	fmt.Fprintf(s.stdout, "  clone:  git clone %s/<repo>.git\n", url)
	fmt.Fprintf(s.stdout, "  api:    %s%s\n", url, api.SettingsPath)

	var servers []func(context.Context) error
	servers = append(servers, func(ctx context.Context) error {
		stop := context.AfterFunc(ctx, geoBeginShutdown)
		defer stop()
		return web.Serve(ctx, httpLn, s.grace)
	})
	if geoRun != nil {
		servers = append(servers, geoRun)
	}
	if packRun != nil {
		servers = append(servers, packRun)
	}

	if s.metricsListen != "" {
		run, err := s.metricsServer(g)
		if err != nil {
			return err
		}
		servers = append(servers, run)
	}
	if s.sshListen != "" {
		run, err := s.sshServer(g)
		if err != nil {
			return err
		}
		servers = append(servers, run)
	}
	run, err := s.socketServer(g)
	switch {
	case errors.Is(err, errReadOnlyDataDir):
		// The gate serves; only the local CLI's view of what is in flight
		// (maintenance status, --wait) is missing.
		s.log.Warn("no admin socket: the data dir is read-only; local \"maintenance status\" and \"--wait\" cannot see this gate's operations in flight", "err", err)
	case err != nil:
		return err
	default:
		servers = append(servers, run)
	}
	servers = append(servers, g.background...)
	// Stale push quarantines: swept now and every hour.
	cleaner := &gitgate.QuarantineCleaner{Resolver: g.resolver, Log: s.log}
	servers = append(servers, cleaner.Run)

	s.log.Info("gitgate started", "http", httpLn.Addr().String(), "repos", g.resolver.Root(), "data_dir", s.dataDir)
	err = runAll(ctx, servers)
	s.log.Info("gitgate stopped")
	return err
}

// build makes the shared parts: state, access, policy, runner, metrics.
func (s *serveCmd) build(ctx context.Context) (*gate, error) {
	for _, d := range []string{s.dataDir, s.repos} {
		if err := os.MkdirAll(d, 0o750); err != nil {
			return nil, fmt.Errorf("create %s: %w", d, err)
		}
	}
	g := &gate{}
	var err error
	if g.resolver, err = gitgate.NewResolver(s.repos); err != nil {
		return nil, err
	}
	if g.runner, err = gitgate.NewRunner(s.git, s.dataDir); err != nil {
		return nil, err
	}
	g.runner.PushFinishTimeout = s.pushFinish
	if s.database.url != "" {
		if err := s.buildShared(ctx, g); err != nil {
			return nil, err
		}
	} else if err := s.buildFiles(ctx, g); err != nil {
		return nil, err
	}
	g.policy = &gitgate.Policy{State: g.live, Access: g.users}
	g.metrics = metrics.New(g.live)
	g.tracker = gitgate.NewTracker(g.metrics)
	if err := s.shareTracker(g); err != nil {
		return nil, err
	}
	g.limiter = gitgate.NewLimiter(s.limits.git)
	if err := g.metrics.Register(limiterCollectors(g.limiter)...); err != nil {
		return nil, fmt.Errorf("limiter metrics: %w", err)
	}
	if g.geo, err = s.setupGeo(g); err != nil {
		return nil, fmt.Errorf("geo: %w", err)
	}
	if err := s.shareGeo(ctx, g); err != nil {
		return nil, err
	}
	if err := g.metrics.Register(g.geo.collectors()...); err != nil {
		return nil, fmt.Errorf("geo metrics: %w", err)
	}

	if s.installHooks {
		if err := s.installAllHooks(ctx, g.resolver); err != nil {
			return nil, err
		}
	}
	s.warnUnserved(ctx, g.resolver)
	return g, nil
}

// buildFiles keeps the state and the access data in the data dir's files.
func (s *serveCmd) buildFiles(ctx context.Context, g *gate) error {
	g.audit = audit.Open(s.dataDir)
	g.store = gitgate.NewFileStore(s.dataDir)
	// Record the state's version for a data dir written by an older gate,
	// so that a state file removed from now on is seen as missing.
	if err := g.store.Init(ctx); err != nil {
		s.log.Error("cannot record the maintenance state version; a removed state file may go unnoticed", "err", err)
	}
	g.live = gitgate.NewLiveState(g.store, s.log)
	// The gate refuses pushes itself as soon as the state is written, not
	// after the wait for ref updates in flight.
	g.fenced = &gitgate.FencedStore{Store: g.store, TxnDir: filepath.Join(s.dataDir, gitgate.TxnDirName),
		Timeout: s.fenceTimeout, Written: g.live.Reload}
	g.live.Run(ctx, 0)
	g.users = access.NewLive(s.dataDir, s.log)
	g.users.OnChange(func(c access.Change) { s.auditAccessLoaded(g.audit, c) })
	if err := g.users.Start(ctx); err != nil {
		return fmt.Errorf("access file: %w", err)
	}
	return nil
}

// auditAccessLoaded records access data the gate put in force, with what
// changed. A change made with the CLI has its own event just before, naming
// who made it; one without is an edit of access.yaml by hand (or a copy
// from a backup), which would otherwise leave no trace.
func (s *serveCmd) auditAccessLoaded(log *audit.Log, c access.Change) {
	s.log.Info("access data changed", "change", c.String())
	ev := audit.Event{Action: "access.loaded", Actor: "file:" + access.FileName, Transport: "file", Detail: c.String()}
	if err := log.Record(ev); err != nil {
		s.log.Error("cannot audit a change of the access file", "err", err)
	}
}

// warnUnserved logs the bare repositories under the root that no name
// reaches (at most 100 of them), so that an administrator can rename or
// repair them.
func (s *serveCmd) warnUnserved(ctx context.Context, resolver *gitgate.Resolver) {
	unserved, err := resolver.Unserved(ctx)
	if err != nil {
		s.log.Warn("cannot look for unserved repositories", "err", err)
		return
	}
	for i, u := range unserved {
		if i == 100 {
			s.log.Warn("more repositories not served", "count", len(unserved)-i)
			break
		}
		s.log.Warn("repository not served", "path", u.Path, "reason", u.Reason)
	}
}

// installAllHooks puts the pre-receive hook into every repository served, so
// that pushes already past the gate and pushes by other servers are refused
// in maintenance too.
func (s *serveCmd) installAllHooks(ctx context.Context, resolver *gitgate.Resolver) error {
	bin, err := selfBinary()
	if err != nil {
		return fmt.Errorf("hooks: find the gitgate binary: %w", err)
	}
	in, err := hooks.NewInstaller(hooks.Script{Binary: bin, DataDir: s.dataDir})
	if err != nil {
		return fmt.Errorf("hooks: %w", err)
	}
	repos, err := resolver.List(ctx)
	if err != nil {
		return err
	}
	if err := in.InstallAll(ctx, repos, s.log); err != nil {
		s.log.Error("pre-receive hook not installed everywhere; those repositories rely on the gate alone", "err", err)
	}
	return nil
}

// httpServer is the smart HTTP front end with the admin API and metrics.
func (s *serveCmd) httpServer(g *gate) (*httpgit.Server, error) {
	limiter := access.NewLimiter(access.LimiterConfig{MaxFailures: s.signinMaxFailures})
	auth := g.geo.auth(&access.RequestAuthenticator{Tokens: g.users, Limiter: limiter})
	cfg := httpgit.Config{
		Policy:   g.policy,
		Resolver: g.resolver,
		Runner:   g.runner,
		Auth:     auth,
		Ready:    readiness(g.live, g.resolver),
		Tracker:  g.tracker,
		Log:      s.log,

		Limiter:         g.limiter,
		MaxRequestBody:  s.limits.maxRequestBody,
		MaxInflatedBody: s.limits.maxInflatedBody,
		BodyIdleTimeout: s.limits.bodyIdleTimeout,
	}
	if s.trustedProxies != nil {
		cfg.ClientAddr = s.trustedProxies.ClientAddr
	}
	if l, err := s.lfsServer(g, auth); err != nil {
		return nil, err
	} else if l != nil {
		cfg.LFS = l
	}
	if p := g.geo.pushProxy(); p != nil {
		cfg.PushProxy = p
		cfg.ReadyDetails = func() any { return map[string]any{"geo": p.Status()} }
	}
	if d := g.geo.readyDetails(); d != nil {
		cfg.ReadyDetails = d
	}
	web, err := httpgit.New(cfg)
	if err != nil {
		return nil, err
	}
	admin := api.New(api.Config{
		Auth: auth, Store: g.fenced, Live: g.live, Tracker: g.tracker, Audit: g.audit, Log: s.log,
		ReadOnly: g.geo.readOnly, Extra: g.geo.settingsExtra, SitePushes: g.sitePushes,
	})
	g.geo.handlers(admin.Handle, admin.RequireAdmin)
	web.Handle("/api/", admin)
	if s.metricsListen == "" {
		web.Handle("GET /metrics", g.metrics.Handler())
	}
	return web, nil
}

// sshServer is the SSH front end; it returns the function that runs it.
func (s *serveCmd) sshServer(g *gate) (func(context.Context) error, error) {
	cfg := sshd.Config{
		Addr:              s.sshListen,
		HostKeyDir:        s.dataDir,
		ExtraHostKeyFiles: s.sshHostKeys,
		Keys:              g.users,
		Policy:            g.policy,
		Resolver:          g.resolver,
		Runner:            g.runner,
		Tracker:           g.tracker,
		Log:               s.log,

		Limiter:            g.limiter,
		MaxSessionsPerUser: s.limits.sshSessionsPerUser,
		Ciphers:            s.packCache.sshCiphers,
	}
	if g.lfs != nil {
		cfg.LFS = g.lfs
	}
	if s.sshProxyProtocol {
		cfg.TrustProxyHeader = s.trustedProxies.TrustsAddr
	}
	if p := g.geo.pushProxy(); p != nil {
		cfg.PushProxy = p
	}
	srv, err := sshd.New(cfg)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", s.sshListen)
	if err != nil {
		return nil, fmt.Errorf("ssh listen: %w", err)
	}
	host, port, _ := net.SplitHostPort(ln.Addr().String())
	fmt.Fprintf(s.stdout, "ssh: listening on ssh://git@%s\n", ln.Addr())
	s.sshListen = ln.Addr().String() // a role switch restarts on the same address
	fmt.Fprintf(s.stdout, "  clone:  git clone ssh://git@%s:%s/<repo>.git\n", host, port)
	for _, fp := range srv.HostKeyFingerprints() {
		fmt.Fprintf(s.stdout, "  host key: %s\n", fp)
	}
	return func(ctx context.Context) error {
		errc := make(chan error, 1)
		go func() { errc <- srv.Serve(context.WithoutCancel(ctx), ln) }()
		select {
		case err := <-errc:
			return err
		case <-ctx.Done():
		}
		graceCtx, cancel := context.WithTimeout(context.Background(), s.grace)
		defer cancel()
		srv.Shutdown(graceCtx)
		return <-errc
	}, nil
}

// metricsServer serves /metrics on its own address.
func (s *serveCmd) metricsServer(g *gate) (func(context.Context) error, error) {
	ln, err := net.Listen("tcp", s.metricsListen)
	if err != nil {
		return nil, fmt.Errorf("metrics listen: %w", err)
	}
	fmt.Fprintf(s.stdout, "metrics: listening on http://%s/metrics\n", ln.Addr())
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", g.metrics.Handler())
	return func(ctx context.Context) error { return serveHTTP(ctx, ln, mux) }, nil
}

// errReadOnlyDataDir marks a failure to create something in a data dir that
// cannot be written.
var errReadOnlyDataDir = errors.New("the data dir is read-only")

// readOnly wraps err with errReadOnlyDataDir when it says the file system or
// the directory refuses writes.
func readOnly(err error) error {
	if errors.Is(err, syscall.EROFS) || errors.Is(err, fs.ErrPermission) {
		return fmt.Errorf("%w: %w", errReadOnlyDataDir, err)
	}
	return err
}

// socketServer serves the admin API on the local socket, as the local admin.
// On a read-only data dir it returns an error wrapping errReadOnlyDataDir.
func (s *serveCmd) socketServer(g *gate) (func(context.Context) error, error) {
	path := filepath.Join(s.dataDir, SocketName)
	ln, err := unixsock.ListenPrivate(path)
	if errors.Is(err, unixsock.ErrInUse) {
		return nil, fmt.Errorf("another gitgate is serving this data dir (%s answers)", path)
	}
	if err != nil {
		return nil, fmt.Errorf("admin socket: %w", readOnly(err))
	}
	h := api.New(api.Config{
		Auth: localAdmin{}, Store: g.fenced, Live: g.live, Tracker: g.tracker, Audit: g.audit,
		ReadOnly: g.geo.readOnly, Extra: g.geo.settingsExtra, SitePushes: g.sitePushes, Transport: "socket", Log: s.log,
	})
	g.geo.failoverHandlers(h.Handle, h.RequireAdmin)
	return func(ctx context.Context) error { return serveHTTP(ctx, ln, h) }, nil
}

// localAdmin authenticates every request on the admin socket as the local
// administrator: only the data dir's owner can connect to it.
type localAdmin struct{}

func (localAdmin) Authenticate(*http.Request) (*gitgate.User, error) {
	return &gitgate.User{Name: cliActor(), Admin: true}, nil
}

// serveHTTP serves h on ln until ctx ends, then shuts down.
func serveHTTP(ctx context.Context, ln net.Listener, h http.Handler) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	srv.Shutdown(shutdownCtx)
	<-errc
	return nil
}

// runAll runs the servers until ctx ends or one fails; then it stops the
// others and waits for all.
func runAll(ctx context.Context, servers []func(context.Context) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, len(servers))
	for i, run := range servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if errs[i] = run(ctx); errs[i] != nil {
				cancel()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// readiness checks that the state is readable and the repository root is
// reachable.
func readiness(live *gitgate.LiveState, resolver *gitgate.Resolver) func(context.Context) error {
	return func(context.Context) error {
		if err := live.Current().Err; err != nil {
			return fmt.Errorf("maintenance state: %w", err)
		}
		if _, err := os.Stat(resolver.Root()); err != nil {
			return fmt.Errorf("repository root: %w", err)
		}
		return nil
	}
}

// reposFlag is --repos, shared by the commands that work on repositories.
func reposFlag() cli.Flag {
	return &cli.StringFlag{
		Name:    "repos",
		Usage:   "directory of bare repositories (default: <data-dir>/repositories)",
		EnvVars: []string{"GITGATE_REPOS"},
	}
}

// reposDir is --repos, or its default under the data dir.
func reposDir(c *cli.Context, dataDir string) string {
	if r := c.String("repos"); r != "" {
		if abs, err := filepath.Abs(r); err == nil {
			return abs
		}
		return r
	}
	return filepath.Join(dataDir, "repositories")
}
