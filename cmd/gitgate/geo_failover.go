package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/gitgate/gitgate/geo"
	"github.com/gitgate/gitgate/pgstore"
)

// primaryGuard loads this primary's failover role (geo.Guard): a site that
// was demoted keeps refusing pushes, and one that is still primary refuses
// them until every secondary in geo.yaml has confirmed its term, unless
// --geo-confirm-primary. The secondary marker is removed only while this
// site is the primary. The role is kept in the site's role store (the data
// dir's file, or the database the site's gates share).
func (s *serveCmd) primaryGuard(g *gate, secondaries []string) (*geo.Guard, error) {
	store, err := s.roleStore(g)
	if err != nil {
		return nil, err
	}
	guard, err := geo.NewGuardOn(context.Background(), store, s.dataDir, s.geo.secondary.NodeName, secondaries, s.geo.confirmPrimary, s.log)
	if err != nil {
		return nil, err
	}
	rec := guard.Record()
	if rec.Role != geo.RolePrimary {
		s.log.Warn("geo: this site was demoted; it refuses pushes and maintenance changes", "term", rec.Term.String())
		return guard, geo.WriteSecondaryMarker(s.dataDir, "", rec.Node)
	}
	if p := guard.Pending(); len(p) > 0 {
		s.log.Info("geo: pushes wait until every secondary confirms this primary's failover term", "term", rec.Term.String(), "pending", p)
	}
	return guard, geo.RemoveSecondaryMarker(s.dataDir)
}

// geoPromoteCommand is "gitgate geo promote [--force]".
func geoPromoteCommand() *cli.Command {
	return &cli.Command{
		Name:  "promote",
		Usage: "on a secondary: make this site the Geo primary of a new failover epoch (refuses unless 0 pending, 0 failed and verified)",
		Description: "Writes the new failover term to the data dir's " + geo.RoleFileName + ". The running secondary\n" +
			"presents it to the old primary at its next status poll, and the old primary demotes itself\n" +
			"at once (it refuses pushes and maintenance changes from then on, also after a restart).\n" +
			"Then restart this site with --geo-role primary --geo-node-name <this node> and a geo.yaml\n" +
			"listing its secondaries; it accepts pushes once every one of them has confirmed the new term.",
		Flags: []cli.Flag{&cli.BoolFlag{
			Name:  "force",
			Usage: "promote even when not in sync; prints the pending repositories and their age",
		}},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usageError{fmt.Errorf("unexpected argument %q", c.Args().First())}
			}
			dir, err := dataDir(c)
			if err != nil {
				return err
			}
			now := time.Now()
			res, err := geo.Promote(dir, now, c.Bool("force"))
			if err != nil {
				if res.Status.Replication != nil {
					printReplication(c.App.ErrWriter, res.Status.Replication, now)
				}
				return err
			}
			w := c.App.Writer
			if res.Forced {
				fmt.Fprintln(w, "WARNING: promoted without being in sync; what the old primary had and this site has not is lost:")
				if r := res.Status.Replication; r != nil {
					printReplication(w, r, now)
				} else {
					fmt.Fprintln(w, "replication:      no status")
				}
			}
			if res.Previous == res.Record.Term {
				fmt.Fprintf(w, "geo: already primary in %s\n", res.Record.Term)
				return nil
			}
			fmt.Fprintf(w, "geo: promoted %s: %s (was %s)\n", res.Record.Node, res.Record.Term, res.Previous)
			fmt.Fprintf(w, "next: restart this gate with --geo-role primary --geo-node-name %s and a %s listing its secondaries\n",
				res.Record.Node, geo.ConfigFileName)
			return nil
		},
	}
}

// primaryView is a primary's Geo part of the readiness and settings
// answers: its secondaries, and its failover term with the secondaries
// that have not confirmed it since the start (pushes wait for them).
func (gs *geoSite) primaryView() map[string]any {
	v := map[string]any{"role": geoPrimary, "nodes": gs.primary.Nodes()}
	if gs.guard != nil {
		rec := gs.guard.Record()
		v["role"], v["term"], v["unconfirmed"] = rec.Role, rec.Term, gs.guard.Pending()
		if r := gs.guard.Refusal(); r != nil {
			v["pushes_refused"] = r.Message
		}
	}
	return v
}

// printRole prints the site's failover role and term, when it has one:
// from the site's database with --database-url, else from the data dir.
func printRole(c *cli.Context, w io.Writer, dir string) error {
	var store geo.RoleStore = geo.FileRoleStore{DataDir: dir}
	if u := databaseURL(c); u != "" {
		db, err := pgstore.Open(c.Context, u, nil, pgstore.Options{})
		if err != nil {
			return err
		}
		defer db.Close()
		store = pgstore.RoleStore{DB: db}
	}
	rec, ok, err := store.LoadRole(c.Context)
	if err != nil || !ok {
		return err
	}
	fmt.Fprintf(w, "failover:         %s, this site %s", rec.Term, rec.Role)
	if rec.Reason != "" {
		fmt.Fprintf(w, " (%s)", rec.Reason)
	}
	fmt.Fprintln(w)
	return nil
}

// geoFailoverCommand is "gitgate geo failover --to NODE ...".
func geoFailoverCommand() *cli.Command {
	return &cli.Command{
		Name:  "failover",
		Usage: "on the primary: planned failover to the secondary NODE (maintenance, drain, verified in sync, promote, reopen)",
		Description: "Runs on the primary's running gate, through its admin socket (local) or --url/--token\n" +
			"(POST " + geo.FailoverPath + ", admin only). The steps:\n" +
			"  1. " + geo.StepNames[geo.StepMaintenance] + "\n" +
			"  2. " + geo.StepNames[geo.StepDrain] + "\n" +
			"  3. " + geo.StepNames[geo.StepInSync] + "\n" +
			"  4. " + geo.StepNames[geo.StepPromote] + "\n" +
			"  5. " + geo.StepNames[geo.StepReopen] + " (once every secondary confirmed it)\n" +
			"Each step is persisted in the data dir's " + geo.FailoverFileName + " before it acts: a run that\n" +
			"stops (timeout, failure, Ctrl-C) leaves maintenance on and one primary, and running the\n" +
			"command again resumes it. --abort undoes it until step 4 begins. The target needs a url in\n" +
			"this primary's " + geo.ConfigFileName + ", and its own " + geo.ConfigFileName + " listing this site and the other secondaries.\n" +
			"On a primary site whose gates share a database (--database-url), run it on any gate: every\n" +
			"gate of the site takes part, and every gate restarts as a secondary of NODE at step 4.",
		Flags: append(remoteFlags(),
			&cli.StringFlag{Name: "to", Usage: "the secondary node to promote (as named in " + geo.ConfigFileName + "); empty resumes the failover in progress"},
			&cli.StringFlag{Name: "message", Usage: "maintenance message during the failover"},
			&cli.DurationFlag{Name: "timeout", Value: geo.DefaultFailoverTimeout, Usage: "give up (maintenance stays on, resumable) after this long"},
			&cli.BoolFlag{Name: "dry-run", Usage: "print the plan and what blocks it now; change nothing"},
			&cli.BoolFlag{Name: "keep-maintenance", Usage: "leave the new primary in maintenance (skip step 5)"},
			&cli.BoolFlag{Name: "abort", Usage: "abort the failover in progress (only before step 4): maintenance returns to what it was"},
		),
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usageError{fmt.Errorf("unexpected argument %q", c.Args().First())}
			}
			if c.Duration("timeout") <= 0 || c.Duration("timeout") > time.Hour {
				return usageError{fmt.Errorf("--timeout must be between 0 and 1h")}
			}
			do, err := failoverTransport(c)
			if err != nil {
				return err
			}
			req := geo.FailoverRequest{
				To: c.String("to"), Message: c.String("message"), Timeout: c.Duration("timeout"),
				DryRun: c.Bool("dry-run"), KeepMaintenance: c.Bool("keep-maintenance"), Abort: c.Bool("abort"),
			}
			w := c.App.Writer
			start := time.Now()
			cl := &geo.FailoverClient{Do: do}
			err = cl.Run(c.Context, req, func(e geo.FailoverEvent) { fmt.Fprintln(w, geo.FormatEvent(e)) })
			if err != nil {
				return err
			}
			if !req.DryRun && !req.Abort {
				fmt.Fprintf(w, "failover finished in %s\n", time.Since(start).Round(time.Millisecond))
			}
			return nil
		},
	}
}

// failoverTransport posts the failover form to --url with --token, or to
// the local gate's admin socket.
func failoverTransport(c *cli.Context) (func(context.Context, url.Values) (*http.Response, error), error) {
	base, token := c.String("url"), c.String("token")
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	if base != "" {
		if token == "" {
			return nil, usageError{errors.New("--url needs --token (or GITGATE_TOKEN)")}
		}
		u, err := url.Parse(base)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, usageError{fmt.Errorf("invalid gate URL %q: want http(s)://host[:port]", base)}
		}
		base = strings.TrimSuffix(base, "/")
	} else {
		dir, err := dataDir(c)
		if err != nil {
			return nil, err
		}
		sock := filepath.Join(dir, SocketName)
		if _, err := os.Stat(sock); err != nil {
			return nil, fmt.Errorf("no running gate here (%s): the failover runs on the primary's running gate", SocketName)
		}
		client.Transport = &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		}}
		base = "http://gitgate"
	}
	return func(ctx context.Context, form url.Values) (*http.Response, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+geo.FailoverPath, strings.NewReader(form.Encode()))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if token != "" {
			req.Header.Set("PRIVATE-TOKEN", token)
		}
		return client.Do(req)
	}, nil
}
