package main

import (
	"errors"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/gitgate/gitgate/geo"
	"github.com/gitgate/gitgate/pgstore"
)

// dbGeoNodesCommand lists the site's registry of Geo secondaries, or
// removes one row of it.
func dbGeoNodesCommand() *cli.Command {
	return &cli.Command{
		Name:  "geo-nodes",
		Usage: "list the Geo secondaries registered by the primary site's gates, with the newest contact any gate heard; --remove NODE removes one",
		Description: "A Geo primary whose gates share the database registers each secondary of its\n" +
			"geo.yaml there (the fingerprint of its secret, never the secret) and records\n" +
			"every contact a gate hears; this lists them from any host. LISTED is when a\n" +
			"gate last listed the node in its geo.yaml (every heartbeat): the gates remove\n" +
			"by themselves the rows no gate has listed for a minute. --remove NODE does it\n" +
			"at once, and refuses while a gate still lists the node (unless --force).",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "remove", Usage: "remove this node's row (once no gate lists it in its geo.yaml)"},
			&cli.BoolFlag{Name: "force", Usage: "with --remove: remove the row even if a gate listed the node within the last minute (it registers it again at its next start)"},
		},
		Action: withArgs(0, 0, dbGeoNodes),
	}
}

func dbGeoNodes(c *cli.Context, _ []string) error {
	u := databaseURL(c)
	if u == "" {
		return usageError{errors.New("this command needs --database-url (or " + EnvDatabaseURL + ")")}
	}
	remove := c.String("remove")
	if remove != "" {
		if err := geo.ValidateNodeName(remove); err != nil {
			return usageError{err}
		}
	} else if c.Bool("force") {
		return usageError{errors.New("--force needs --remove NODE")}
	}
	db, err := pgstore.Open(c.Context, u, nil, pgstore.Options{})
	if err != nil {
		return err
	}
	defer db.Close()
	if remove != "" {
		ok, err := db.RemoveGeoNode(c.Context, remove, pgstore.DefaultGeoUnlistedAfter, c.Bool("force"))
		switch {
		case errors.Is(err, pgstore.ErrGeoNodeListed):
			return fmt.Errorf("%w; remove it from every gate's %s first (or use --force)", err, geo.ConfigFileName)
		case err != nil:
			return err
		case !ok:
			return fmt.Errorf("Geo node %s is not in the registry", remove)
		}
		fmt.Fprintf(c.App.Writer, "removed Geo node %s from the registry\n", remove)
		return nil
	}
	nodes, err := db.GeoNodes(c.Context)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tLAST CONTACT\tGATE\tVERSION SEEN\tSECRET\tLISTED")
	for _, n := range nodes {
		last, gate := "never", "-"
		if !n.LastContact.IsZero() {
			last, gate = n.LastContact.UTC().Format(time.RFC3339), n.Gate
		}
		fp := n.Fingerprint
		if len(fp) > 19 {
			fp = fp[:19] + "…"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", n.Name, last, gate, n.VersionSeen, fp, n.Listed.UTC().Format(time.RFC3339))
	}
	return tw.Flush()
}
