package main

import (
	"errors"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/gitgate/gitgate/pgstore"
)

// dbGeoNodesCommand lists the site's registry of Geo secondaries.
func dbGeoNodesCommand() *cli.Command {
	return &cli.Command{
		Name:  "geo-nodes",
		Usage: "list the Geo secondaries registered by the primary site's gates, with the newest contact any gate heard",
		Description: "A Geo primary whose gates share the database registers each secondary of its\n" +
			"geo.yaml there (the fingerprint of its secret, never the secret) and records\n" +
			"every contact a gate hears; this lists them from any host.",
		Action: withArgs(0, 0, dbGeoNodes),
	}
}

func dbGeoNodes(c *cli.Context, _ []string) error {
	u := databaseURL(c)
	if u == "" {
		return usageError{errors.New("this command needs --database-url (or " + EnvDatabaseURL + ")")}
	}
	db, err := pgstore.Open(c.Context, u, nil, pgstore.Options{})
	if err != nil {
		return err
	}
	defer db.Close()
	nodes, err := db.GeoNodes(c.Context)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tLAST CONTACT\tGATE\tVERSION SEEN\tSECRET")
	for _, n := range nodes {
		last, gate := "never", "-"
		if !n.LastContact.IsZero() {
			last, gate = n.LastContact.UTC().Format(time.RFC3339), n.Gate
		}
		fp := n.Fingerprint
		if len(fp) > 19 {
			fp = fp[:19] + "…"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", n.Name, last, gate, n.VersionSeen, fp)
	}
	return tw.Flush()
}
