package main

import (
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/gitgate/gitgate/geo"
	"github.com/gitgate/gitgate/httpgit"
	"github.com/gitgate/gitgate/lfs"
)

// lfsOptions are serve's Git LFS settings.
type lfsOptions struct {
	externalURL   string
	maxObjectSize int64
}

// lfsFlags are serve's flags for lfsOptions.
func lfsFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{
			Name: "external-url",
			Usage: "the gate's public base URL (http(s)://host[:port]); Git LFS hrefs start with it " +
				"(default: the address each HTTP request arrived on, never its Host header alone, " +
				"and for git-lfs-authenticate over SSH the HTTP listener's; set it behind a proxy)",
			EnvVars: []string{"GITGATE_EXTERNAL_URL"},
		},
		&cli.StringFlag{
			Name:    "lfs-max-object-size",
			Usage:   "largest Git LFS object accepted (e.g. 10GiB)",
			Value:   "10GiB",
			EnvVars: []string{"GITGATE_LFS_MAX_OBJECT_SIZE"},
		},
	}
}

// lfsOptionsFrom reads the LFS flags.
func lfsOptionsFrom(c *cli.Context) (lfsOptions, error) {
	o := lfsOptions{externalURL: strings.TrimRight(c.String("external-url"), "/")}
	if o.externalURL != "" {
		u, err := url.Parse(o.externalURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
			return o, usageError{fmt.Errorf("serve: --external-url must be an http or https URL like https://git.example.com")}
		}
	}
	size, err := parseSize(c.String("lfs-max-object-size"))
	if err != nil || size <= 0 {
		return o, usageError{fmt.Errorf("serve: --lfs-max-object-size: a positive size like 10GiB")}
	}
	o.maxObjectSize = size
	return o, nil
}

// lfsServer makes the Git LFS API with the same authentication, policy and
// limits as Git over HTTP, and records it for the SSH server's
// git-lfs-authenticate. A data dir where the LFS store cannot be created
// (read-only) serves without LFS, with a warning.
func (s *serveCmd) lfsServer(g *gate, auth httpgit.Authenticator) (*lfs.Server, error) {
	dir := filepath.Join(s.dataDir, "lfs")
	store, err := lfs.NewStore(dir)
	if err != nil {
		s.log.Warn("Git LFS is off: its store cannot be created in the data dir", "err", err)
		return nil, nil
	}
	store.SetRepositories(s.repos)
	secret, err := lfs.LoadOrCreateSecret(filepath.Join(dir, "secret"))
	if err != nil {
		s.log.Warn("Git LFS is off: no signing secret", "err", err)
		return nil, nil
	}
	m := lfs.NewMetrics()
	if err := g.metrics.Register(m.Collectors()...); err != nil {
		return nil, fmt.Errorf("lfs metrics: %w", err)
	}
	srv, err := lfs.New(lfs.Config{
		Policy: g.policy, Resolver: g.resolver, Auth: auth, Users: g.users,
		Store: store, Locks: lfs.NewLocks(filepath.Join(dir, "locks")), Signer: lfs.NewSigner(secret),
		Tracker: g.tracker, Limiter: g.limiter, Metrics: m, Log: s.log,
		ExternalURL:   s.lfs.externalURL,
		DefaultURL:    func() string { return g.httpURL },
		Primary:       g.geo.lfsPrimary(),
		Origin:        g.geo.lfsOrigin(),
		OnStored:      g.geo.lfsStored(),
		MaxObjectSize: s.lfs.maxObjectSize,
	})
	if err != nil {
		return nil, err
	}
	g.lfs = srv
	g.geo.useLFS(store, s.lfs.maxObjectSize)
	return srv, nil
}

// lfsPrimary is where a Geo secondary sends LFS writes and lock requests:
// the primary (nil on other sites).
func (gs *geoSite) lfsPrimary() lfs.PrimaryProxy {
	if p := gs.pushProxy(); p != nil {
		return p
	}
	return nil
}

// lfsOrigin is where a Geo secondary fetches the LFS objects it has not
// copied yet: the primary (nil on other sites).
func (gs *geoSite) lfsOrigin() lfs.Origin {
	if gs == nil || gs.replica == nil {
		return nil
	}
	return gs.replica.LFSOrigin()
}

// lfsStored records a change for an LFS upload on a Geo primary, so that
// its secondaries copy the object at once (nil on other sites).
func (gs *geoSite) lfsStored() func(repo string) {
	if gs == nil || gs.feed == nil {
		return nil
	}
	return gs.feed.LFSChanged
}

// useLFS replicates LFS objects with the repositories: a primary serves
// its store to the secondaries, a secondary copies into its own.
func (gs *geoSite) useLFS(store *lfs.Store, maxObjectSize int64) {
	switch {
	case gs == nil:
	case gs.replica != nil:
		gs.replica.UseLFS(store, maxObjectSize)
	case gs.primary != nil:
		gs.lfsStore = store
	}
}

// lfsHandlers registers a primary's LFS replication endpoints.
func (gs *geoSite) lfsHandlers(register func(string, http.Handler)) {
	if gs.lfsStore == nil {
		return
	}
	register("GET "+geo.LFSObjectsPath, gs.primary.LFSObjectsHandler(gs.lfsStore))
	register("GET "+geo.LFSObjectPath, gs.primary.LFSObjectHandler(gs.lfsStore))
}
