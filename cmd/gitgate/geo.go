package main

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/gitgate/gitgate/geo"
)

func geoCommand() *cli.Command {
	return &cli.Command{
		Name:  "geo",
		Usage: "Geo sites: what this site knows of the others",
		Subcommands: []*cli.Command{{
			Name:  "status",
			Usage: "on a primary, list the secondaries with last contact, version seen, lag and replication (synced/pending/failed, oldest unsynced change); on a secondary, the same for itself",
			Description: "Reads the status file the running gate keeps in the data dir (refreshed every\n" +
				"few seconds). On a primary gate of a site whose gates share a database, each\n" +
				"secondary's contact, version and replication are the newest any gate of the site\n" +
				"heard (GATE says which); with --database-url the failover role is the site's,\n" +
				"read from the database.",
			Action: func(c *cli.Context) error {
				if c.NArg() > 0 {
					return usageError{fmt.Errorf("unexpected argument %q", c.Args().First())}
				}
				dir, err := dataDir(c)
				if err != nil {
					return err
				}
				now := time.Now()
				if err := printRole(c, c.App.Writer, dir); err != nil {
					return err
				}
				if fs, ok, err := geo.ReadFollowerStatus(dir, now); err != nil {
					return err
				} else if ok {
					if err := (status{Geo: &fs}).printGeo(c.App.Writer); err != nil {
						return err
					}
					printReplication(c.App.Writer, fs.Replication, now)
					return nil
				}
				ps, ok, err := geo.ReadPrimaryStatus(dir, now)
				if err != nil {
					return err
				}
				if !ok {
					return fmt.Errorf("no Geo status in %s: start the gate with --geo-role", dir)
				}
				return printPrimaryStatus(c.App.Writer, ps, now)
			},
		}, geoPromoteCommand(), geoFailoverCommand()},
	}
}

func printPrimaryStatus(w io.Writer, ps geo.PrimaryStatus, now time.Time) error {
	fmt.Fprintf(w, "geo: primary, state version %d", ps.Version)
	if !ps.Running {
		fmt.Fprintf(w, " (the gate is not running; as of %s)", ps.Written.Format(time.RFC3339))
	}
	fmt.Fprintln(w)
	// A gate of a site sharing a database says which gate heard each
	// secondary last (any gate's contact counts).
	shared := false
	for _, n := range ps.Nodes {
		shared = shared || n.Gate != ""
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	if shared {
		fmt.Fprintln(tw, "NODE\tCONNECTED\tLAST CONTACT\tGATE\tVERSION SEEN\tLAG\tSYNCED\tPENDING\tFAILED\tOLDEST UNSYNCED")
	} else {
		fmt.Fprintln(tw, "NODE\tCONNECTED\tLAST CONTACT\tVERSION SEEN\tLAG\tSYNCED\tPENDING\tFAILED\tOLDEST UNSYNCED")
	}
	for _, n := range ps.Nodes {
		contact := "never"
		if !n.LastContact.IsZero() {
			contact = fmt.Sprintf("%s (%s ago)", n.LastContact.Format(time.RFC3339), now.Sub(n.LastContact).Round(time.Second))
		}
		if shared {
			gate := n.Gate
			if gate == "" {
				gate = "-"
			}
			contact += "\t" + gate
		}
		synced, pending, failed, oldest := "-", "-", "-", "-"
		if r := n.Replication; r != nil {
			synced, pending, failed = strconv.Itoa(r.Synced), strconv.Itoa(r.Pending), strconv.Itoa(r.Failed)
			oldest = oldestUnsynced(r, now)
		}
		fmt.Fprintf(tw, "%s\t%v\t%s\t%d\t%d\t%s\t%s\t%s\t%s\n", n.Name, n.Connected, contact, n.VersionSeen, n.Lag,
			synced, pending, failed, oldest)
	}
	return tw.Flush()
}

// oldestUnsynced says when the oldest change not yet replicated was made,
// and how long ago; "none" when caught up.
func oldestUnsynced(r *geo.ReplicationStatus, now time.Time) string {
	if r.OldestUnsynced.IsZero() {
		return "none"
	}
	return fmt.Sprintf("%s (%s ago)", r.OldestUnsynced.Format(time.RFC3339), now.Sub(r.OldestUnsynced).Round(time.Millisecond))
}

// printReplication prints a secondary's replication status.
func printReplication(w io.Writer, r *geo.ReplicationStatus, now time.Time) {
	if r == nil {
		fmt.Fprintln(w, "replication:      not running")
		return
	}
	if r.Reconciled.IsZero() {
		fmt.Fprintf(w, "repositories:     not compared with the primary yet (%d synced, %d pending, %d failed so far)\n", r.Synced, r.Pending, r.Failed)
	} else {
		fmt.Fprintf(w, "repositories:     %d synced, %d pending, %d failed\n", r.Synced, r.Pending, r.Failed)
	}
	if r.LFS != (geo.LFSCounts{}) {
		fmt.Fprintf(w, "lfs objects:      %d synced, %d pending, %d failed\n", r.LFS.Synced, r.LFS.Pending, r.LFS.Failed)
	}
	fmt.Fprintf(w, "oldest unsynced:  %s\n", oldestUnsynced(r, now))
	contact := "never"
	if !r.LastContact.IsZero() {
		contact = fmt.Sprintf("%s (%s ago)", r.LastContact.Format(time.RFC3339), now.Sub(r.LastContact).Round(time.Second))
	}
	fmt.Fprintf(w, "change log:       last answer %s\n", contact)
	if r.AccessVersion != "" {
		fmt.Fprintf(w, "access data:      version %.12s\n", r.AccessVersion)
	}
	for _, e := range r.Errors {
		fmt.Fprintf(w, "failed:           %s: %s\n", e.Repo, e.Error)
	}
}

// refuseAccessOnSecondary refuses changes of users, keys, tokens and
// rules on a Geo secondary site: its access data is the primary's.
func refuseAccessOnSecondary(dataDir string) error {
	return refuseOnGeoSecondary(dataDir, "the access data is not changed", geo.ChangeAccessOnPrimary)
}

// refuseOnGeoSecondary refuses a local change on a Geo secondary site,
// whose data follows the primary's: message gets the primary's URL. A
// marker that cannot be read refuses too, saying what is not done.
func refuseOnGeoSecondary(dataDir, notDone string, message func(primaryURL string) string) error {
	m, ok, err := geo.ReadSecondaryMarker(dataDir)
	if err != nil {
		return fmt.Errorf("this data dir's Geo role cannot be read, so %s here: %w", notDone, err)
	}
	if ok {
		return errors.New(message(m.PrimaryURL))
	}
	return nil
}
