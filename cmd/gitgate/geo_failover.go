package main

import (
	"fmt"
	"io"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/gitgate/gitgate/geo"
)

// primaryGuard loads this primary's failover role (geo.Guard): a site that
// was demoted keeps refusing pushes, and one that is still primary refuses
// them until every secondary in geo.yaml has confirmed its term, unless
// --geo-confirm-primary. The secondary marker is removed only while this
// site is the primary.
func (s *serveCmd) primaryGuard(secondaries []string) (*geo.Guard, error) {
	guard, err := geo.NewGuard(s.dataDir, s.geo.secondary.NodeName, secondaries, s.geo.confirmPrimary, s.log)
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

// printRole prints the site's failover role and term, when it has one.
func printRole(w io.Writer, dir string) error {
	rec, ok, err := geo.ReadRole(dir)
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
