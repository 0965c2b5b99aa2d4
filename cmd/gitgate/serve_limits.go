package main

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/urfave/cli/v2"

	"github.com/gitgate/gitgate/gitgate"
	"github.com/gitgate/gitgate/httpgit"
	"github.com/gitgate/gitgate/sshd"
)

// limitOptions are serve's bounds on the work one client can cause.
type limitOptions struct {
	git                gitgate.Limits
	maxRequestBody     int64
	maxInflatedBody    int64
	bodyIdleTimeout    time.Duration
	sshSessionsPerUser int
}

// limitFlags are serve's flags for limitOptions.
func limitFlags() []cli.Flag {
	return []cli.Flag{
		&cli.IntFlag{
			Name:    "max-git",
			Usage:   "git processes running at once on the whole server, both transports (-1: no limit)",
			Value:   gitgate.DefaultMaxGit,
			EnvVars: []string{"GITGATE_MAX_GIT"},
		},
		&cli.IntFlag{
			Name:    "max-git-per-repo",
			Usage:   "git processes running at once on one repository (-1: no limit)",
			Value:   gitgate.DefaultMaxGitPerRepo,
			EnvVars: []string{"GITGATE_MAX_GIT_PER_REPO"},
		},
		&cli.IntFlag{
			Name:    "max-git-per-user",
			Usage:   "git processes running at once for one user, or one address (IPv6: one /64) for anonymous clients (-1: no limit)",
			Value:   gitgate.DefaultMaxGitPerUser,
			EnvVars: []string{"GITGATE_MAX_GIT_PER_USER"},
		},
		&cli.IntFlag{
			Name:    "max-git-queue",
			Usage:   "git operations of one user (or anonymous address) that wait for a slot when a --max-git* limit is reached; more are refused (-1: none wait)",
			Value:   gitgate.DefaultMaxGitQueue,
			EnvVars: []string{"GITGATE_MAX_GIT_QUEUE"},
		},
		&cli.DurationFlag{
			Name:    "max-git-queue-timeout",
			Usage:   "how long a git operation waits for a slot before it is refused as busy",
			Value:   gitgate.DefaultMaxGitQueueTimeout,
			EnvVars: []string{"GITGATE_MAX_GIT_QUEUE_TIMEOUT"},
		},
		&cli.StringFlag{
			Name:    "max-request-body",
			Usage:   "largest fetch request body over HTTP, after gzip decompression (e.g. 32MiB; -1: no limit)",
			Value:   "32MiB",
			EnvVars: []string{"GITGATE_MAX_REQUEST_BODY"},
		},
		&cli.StringFlag{
			Name:    "max-inflated-body",
			Usage:   "largest gzip-compressed HTTP request body after decompression, pushes included (-1: no limit)",
			Value:   "2GiB",
			EnvVars: []string{"GITGATE_MAX_INFLATED_BODY"},
		},
		&cli.DurationFlag{
			Name:    "http-idle-timeout",
			Usage:   "end a Git HTTP request, and its git, when the client sends or reads nothing for this long (-1s: never)",
			Value:   httpgit.DefaultBodyIdleTimeout,
			EnvVars: []string{"GITGATE_HTTP_IDLE_TIMEOUT"},
		},
		&cli.IntFlag{
			Name:    "ssh-max-sessions-per-user",
			Usage:   "SSH sessions open at once for one user, over all their connections",
			Value:   sshd.DefaultMaxSessionsPerUser,
			EnvVars: []string{"GITGATE_SSH_MAX_SESSIONS_PER_USER"},
		},
	}
}

// limitOptionsFrom reads and checks the limit flags.
func limitOptionsFrom(c *cli.Context) (limitOptions, error) {
	o := limitOptions{
		git: gitgate.Limits{
			Global:       c.Int("max-git"),
			PerRepo:      c.Int("max-git-per-repo"),
			PerUser:      c.Int("max-git-per-user"),
			Queue:        c.Int("max-git-queue"),
			QueueTimeout: c.Duration("max-git-queue-timeout"),
		},
		bodyIdleTimeout:    c.Duration("http-idle-timeout"),
		sshSessionsPerUser: c.Int("ssh-max-sessions-per-user"),
	}
	for _, f := range []struct {
		name string
		n    int
	}{{"--max-git", o.git.Global}, {"--max-git-per-repo", o.git.PerRepo}, {"--max-git-per-user", o.git.PerUser}, {"--max-git-queue", o.git.Queue}} {
		if f.n == 0 || f.n < -1 {
			return o, usageError{fmt.Errorf("%s must be a positive number or -1 (no limit)", f.name)}
		}
	}
	if o.git.QueueTimeout <= 0 {
		return o, usageError{fmt.Errorf("--max-git-queue-timeout must be positive")}
	}
	if o.sshSessionsPerUser <= 0 {
		return o, usageError{fmt.Errorf("--ssh-max-sessions-per-user must be a positive number")}
	}
	if o.bodyIdleTimeout == 0 {
		return o, usageError{fmt.Errorf("--http-idle-timeout must not be 0 (use -1s for no timeout)")}
	}
	var err error
	if o.maxRequestBody, err = parseSize(c.String("max-request-body")); err != nil {
		return o, usageError{fmt.Errorf("--max-request-body: %w", err)}
	}
	if o.maxInflatedBody, err = parseSize(c.String("max-inflated-body")); err != nil {
		return o, usageError{fmt.Errorf("--max-inflated-body: %w", err)}
	}
	return o, nil
}

// limiterCollectors exposes the git process limiter: slots in use and
// operations waiting for one.
func limiterCollectors(l *gitgate.Limiter) []prometheus.Collector {
	return []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "gitgate_git_processes_running",
			Help: "Git processes holding a slot of the process limiter.",
		}, func() float64 { n, _, _ := l.InUse(gitgate.Operation{}); return float64(n) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "gitgate_git_processes_waiting",
			Help: "Git operations waiting for a slot of the process limiter.",
		}, func() float64 { return float64(l.Waiting()) }),
	}
}

// parseSize reads a positive byte count with an optional KiB, MiB or GiB
// suffix (also K, M, G, KB, MB, GB, all powers of 1024), or -1 for none.
func parseSize(s string) (int64, error) {
	orig := s
	s = strings.TrimSpace(s)
	if s == "-1" {
		return -1, nil
	}
	mult := int64(1)
	upper := strings.ToUpper(s)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KIB", 1 << 10}, {"MIB", 1 << 20}, {"GIB", 1 << 30}, {"KB", 1 << 10}, {"MB", 1 << 20}, {"GB", 1 << 30}, {"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"B", 1}} {
		if strings.HasSuffix(upper, u.suffix) {
			s, mult = strings.TrimSpace(s[:len(s)-len(u.suffix)]), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("invalid size %q: want a positive number of bytes, e.g. 32MiB, or -1", orig)
	}
	return n * mult, nil
}
