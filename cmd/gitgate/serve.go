package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/gitgate/gitgate/gitgate"
	"github.com/gitgate/gitgate/httpgit"
)

func serveCommand() *cli.Command {
	return &cli.Command{
		Name:  "serve",
		Usage: "serve the repositories over smart HTTP (and SSH) and enforce maintenance mode",
		Description: "Serves the bare repositories under --repos. Pushes are refused while the\n" +
			"maintenance state in the data dir is enabled; changes to it (by\n" +
			"'gitgate maintenance') take effect without a restart. SIGINT or SIGTERM\n" +
			"stop accepting work and give running requests --shutdown-grace to finish.",
		Flags: []cli.Flag{
			reposFlag(),
			&cli.StringFlag{
				Name:    "http-listen",
				Usage:   "address for smart HTTP, the API and the probes (port 0 picks a free port)",
				Value:   "127.0.0.1:8080",
				EnvVars: []string{"GITGATE_HTTP_LISTEN"},
			},
			&cli.StringFlag{
				Name:    "ssh-listen",
				Usage:   "address for Git over SSH",
				Value:   "127.0.0.1:2222",
				EnvVars: []string{"GITGATE_SSH_LISTEN"},
			},
			&cli.BoolFlag{
				Name:    "allow-anonymous-push",
				Usage:   "let anyone push over HTTP without signing in (never for a real server)",
				EnvVars: []string{"GITGATE_ALLOW_ANONYMOUS_PUSH"},
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
		},
		Action: func(c *cli.Context) error {
			log, err := newLogger(c)
			if err != nil {
				return err
			}
			dir, err := dataDir(c)
			if err != nil {
				return err
			}
			s := &serveCmd{
				dataDir:            dir,
				repos:              reposDir(c, dir),
				httpListen:         c.String("http-listen"),
				allowAnonymousPush: c.Bool("allow-anonymous-push"),
				grace:              c.Duration("shutdown-grace"),
				git:                c.String("git"),
				log:                log,
				stdout:             c.App.Writer,
			}
			return s.Execute(c.Context)
		},
	}
}

// serveCmd is "gitgate serve": it wires the gate's parts together and runs
// the servers until the context ends.
type serveCmd struct {
	dataDir            string
	repos              string
	httpListen         string
	allowAnonymousPush bool
	grace              time.Duration
	git                string
	log                *slog.Logger
	stdout             io.Writer
}

// Execute runs the gate until ctx is done, then shuts down gracefully.
func (s *serveCmd) Execute(ctx context.Context) error {
	for _, d := range []string{s.dataDir, s.repos} {
		if err := os.MkdirAll(d, 0o750); err != nil {
			return fmt.Errorf("create %s: %w", d, err)
		}
	}
	resolver, err := gitgate.NewResolver(s.repos)
	if err != nil {
		return err
	}
	runner, err := gitgate.NewRunner(s.git, s.dataDir)
	if err != nil {
		return err
	}
	store := gitgate.NewFileStore(s.dataDir)
	live := gitgate.NewLiveState(store, s.log)
	live.Run(ctx, 0)

	policy := &gitgate.Policy{State: live, Access: gitgate.AnonymousAccess{Write: s.allowAnonymousPush}}
	if s.allowAnonymousPush {
		s.log.Warn("anonymous push is allowed: anyone who can reach the HTTP port can write")
	}
	web, err := httpgit.New(httpgit.Config{
		Policy:   policy,
		Resolver: resolver,
		Runner:   runner,
		Auth:     httpgit.Anonymous{},
		Ready:    readiness(live, resolver),
		Log:      s.log,
	})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", s.httpListen)
	if err != nil {
		return fmt.Errorf("http listen: %w", err)
	}
	url := "http://" + ln.Addr().String()
	fmt.Fprintf(s.stdout, "gitgate %s serving %s\n", version, resolver.Root())
	fmt.Fprintf(s.stdout, "http: listening on %s\n", url)
	fmt.Fprintf(s.stdout, "  clone:  git clone %s/<repo>.git\n", url)
	fmt.Fprintf(s.stdout, "  health: %s/-/health  readiness: %s/-/readiness\n", url, url)
	s.log.Info("gitgate started", "http", ln.Addr().String(), "repos", resolver.Root(), "data_dir", s.dataDir)

	err = web.Serve(ctx, ln, s.grace)
	s.log.Info("gitgate stopped")
	return err
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
