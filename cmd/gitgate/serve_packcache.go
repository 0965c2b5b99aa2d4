package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/gitgate/gitgate/packcache"
	"github.com/gitgate/gitgate/sshd"
)

// PackObjectsSocketName is the Unix socket, in the data dir, on which the
// pack-objects hook reaches the gate.
const PackObjectsSocketName = "pack-objects.sock"

// packCacheOptions are serve's pack-objects cache and limit settings, and
// the SSH ciphers (the other half of cheap clones).
type packCacheOptions struct {
	sshCiphers []string
	hook       bool
	cache      bool
	dir        string
	maxAge     time.Duration
	maxBytes   int64
	minOccur   int // --pack-objects-cache-min-occurrences
	limits     packcache.Limits
}

// packCacheFlags are serve's flags for packCacheOptions.
func packCacheFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringSliceFlag{
			Name: "ssh-ciphers",
			Usage: "SSH ciphers offered to every client, in order (comma list; default: decided per client: AES-GCM only to " +
				"OpenSSH's client when it offers AES-GCM, on CPUs with AES instructions; AES-GCM, ChaCha20 and AES-CTR to the others). Supported: " + strings.Join(sshd.SupportedCiphers(), ","),
			EnvVars: []string{"GITGATE_SSH_CIPHERS"},
		},
		&cli.BoolFlag{
			Name:    "pack-objects-hook",
			Usage:   "serve fetches' packs through the gate (cache and limits below); =false lets git run pack-objects itself",
			Value:   true,
			EnvVars: []string{"GITGATE_PACK_OBJECTS_HOOK"},
		},
		&cli.BoolFlag{
			Name:    "pack-objects-cache",
			Usage:   "share one generated pack between identical fetches; =false generates every pack (the limits still apply)",
			Value:   true,
			EnvVars: []string{"GITGATE_PACK_OBJECTS_CACHE"},
		},
		&cli.StringFlag{
			Name:    "pack-objects-cache-dir",
			Usage:   "`DIR` of the cached packs, emptied at start (default: <data-dir>/pack-objects-cache)",
			EnvVars: []string{"GITGATE_PACK_OBJECTS_CACHE_DIR"},
		},
		&cli.DurationFlag{
			Name:    "pack-objects-cache-max-age",
			Usage:   "how long a generated pack is served again",
			Value:   packcache.DefaultMaxAge,
			EnvVars: []string{"GITGATE_PACK_OBJECTS_CACHE_MAX_AGE"},
		},
		&cli.IntFlag{
			Name:    "pack-objects-cache-min-occurrences",
			Usage:   "cache a pack only when its fetch was asked for this many times before (within the max age); 0 caches every pack, 1 skips unique fetches as Gitaly does",
			Value:   0,
			EnvVars: []string{"GITGATE_PACK_OBJECTS_CACHE_MIN_OCCURRENCES"},
		},
		&cli.StringFlag{
			Name:    "pack-objects-cache-max-size",
			Usage:   "total size of the cached packs; the oldest are removed first (e.g. 4GiB)",
			Value:   "4GiB",
			EnvVars: []string{"GITGATE_PACK_OBJECTS_CACHE_MAX_SIZE"},
		},
		&cli.IntFlag{
			Name:    "pack-objects-per-repo",
			Usage:   "pack generations running at once for one repository (default: the number of CPUs; -1: no limit)",
			Value:   packcache.DefaultPerRepo(),
			EnvVars: []string{"GITGATE_PACK_OBJECTS_PER_REPO"},
		},
		&cli.IntFlag{
			Name:    "pack-objects-queue",
			Usage:   "pack generations waiting for a slot, per repository; more are refused (-1: none wait)",
			Value:   packcache.DefaultQueue,
			EnvVars: []string{"GITGATE_PACK_OBJECTS_QUEUE"},
		},
		&cli.DurationFlag{
			Name:    "pack-objects-queue-timeout",
			Usage:   "how long a pack generation waits for a slot before the fetch is refused",
			Value:   packcache.DefaultQueueTimeout,
			EnvVars: []string{"GITGATE_PACK_OBJECTS_QUEUE_TIMEOUT"},
		},
		&cli.IntFlag{
			Name:    "pack-objects-per-user",
			Usage:   "pack generations one user (or anonymous address) has running or waiting at once, all repositories (-1: no limit)",
			Value:   packcache.DefaultPerUser,
			EnvVars: []string{"GITGATE_PACK_OBJECTS_PER_USER"},
		},
	}
}

// packCacheOptionsFrom reads and checks the flags.
func packCacheOptionsFrom(c *cli.Context, dataDir string) (packCacheOptions, error) {
	o := packCacheOptions{
		sshCiphers: c.StringSlice("ssh-ciphers"),
		hook:       c.Bool("pack-objects-hook"),
		cache:      c.Bool("pack-objects-cache"),
		dir:        c.String("pack-objects-cache-dir"),
		maxAge:     c.Duration("pack-objects-cache-max-age"),
		minOccur:   c.Int("pack-objects-cache-min-occurrences"),
		limits: packcache.Limits{
			PerRepo:      c.Int("pack-objects-per-repo"),
			Queue:        c.Int("pack-objects-queue"),
			QueueTimeout: c.Duration("pack-objects-queue-timeout"),
			PerUser:      c.Int("pack-objects-per-user"),
		},
	}
	if o.dir == "" {
		o.dir = filepath.Join(dataDir, "pack-objects-cache")
	}
	if o.maxAge <= 0 {
		return o, usageError{fmt.Errorf("--pack-objects-cache-max-age must be positive")}
	}
	if o.minOccur < 0 {
		return o, usageError{fmt.Errorf("--pack-objects-cache-min-occurrences must be 0 or more")}
	}
	if o.limits.QueueTimeout <= 0 {
		return o, usageError{fmt.Errorf("--pack-objects-queue-timeout must be positive")}
	}
	for _, f := range []struct {
		name string
		n    int
	}{{"--pack-objects-queue", o.limits.Queue}, {"--pack-objects-per-user", o.limits.PerUser}} {
		if f.n == 0 || f.n < -1 {
			return o, usageError{fmt.Errorf("%s must be a positive number or -1", f.name)}
		}
	}
	if o.limits.PerRepo < -1 {
		return o, usageError{fmt.Errorf("--pack-objects-per-repo must be a positive number or -1")}
	}
	var err error
	if o.maxBytes, err = parseSize(c.String("pack-objects-cache-max-size")); err != nil || o.maxBytes < 0 {
		return o, usageError{fmt.Errorf("--pack-objects-cache-max-size: want a positive size, e.g. 4GiB")}
	}
	return o, nil
}

// packObjectsServer sets the runner's pack-objects hook and returns the
// function that serves it, or nil with --pack-objects-hook=false. It runs
// until ctx has ended and the shutdown grace has passed, so that clones
// in their grace period finish.
func (s *serveCmd) packObjectsServer(ctx context.Context, g *gate) (func(context.Context) error, error) {
	o := s.packCache
	if !o.hook {
		return nil, nil
	}
	self, err := selfBinary()
	if err != nil {
		return nil, fmt.Errorf("pack-objects hook: %w", err)
	}
	socket := filepath.Join(s.dataDir, PackObjectsSocketName)
	if len(socket) > 100 { // sun_path holds 108 bytes
		s.log.Warn("pack-objects cache off: the data dir's path is too long for a Unix socket", "socket", socket)
		return nil, nil
	}
	genCtx, stopGen := context.WithCancel(context.WithoutCancel(ctx))
	cache, err := packcache.New(genCtx, packcache.Config{
		Dir: o.dir, MaxAge: o.maxAge, MaxBytes: o.maxBytes, Disabled: !o.cache, MinOccurrences: o.minOccur,
		Git: g.runner.GitPath(), Env: g.runner.BaseEnv(), Limits: o.limits, Log: s.log,
	})
	if err != nil {
		stopGen()
		return nil, err
	}
	srv := packcache.NewServer(cache, socket, shellQuote(self)+" hook "+packObjectsHookName, s.log)
	ln, err := srv.Listen()
	if err != nil {
		stopGen()
		s.log.Warn("pack-objects cache off: no socket", "err", readOnly(err))
		return nil, nil
	}
	if err := g.metrics.Register(cache.Stats().Collectors()...); err != nil {
		stopGen()
		ln.Close()
		return nil, fmt.Errorf("pack-objects metrics: %w", err)
	}
	g.runner.PackObjects = srv
	return func(ctx context.Context) error {
		defer stopGen()
		done := make(chan error, 1)
		go func() { done <- srv.Serve(genCtx, ln) }()
		go cache.Run(genCtx, 0)
		select {
		case err := <-done:
			return err
		case <-ctx.Done():
		}
		// Fetches in their shutdown grace still need the socket.
		graceCtx, cancel := context.WithTimeout(context.Background(), s.grace)
		defer cancel()
		srv.WaitIdle(graceCtx)
		stopGen()
		err := <-done
		cache.Wait()
		return err
	}, nil
}

// shellQuote quotes s for sh: git runs the hook command through the shell.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
