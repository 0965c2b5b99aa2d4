package main

import (
	"fmt"
	"io"
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
			Usage: "on a primary, list the secondaries with last contact, version seen and lag; on a secondary, how fresh it is",
			Description: "Reads the status file the running gate keeps in the data dir (refreshed every\n" +
				"few seconds).",
			Action: func(c *cli.Context) error {
				if c.NArg() > 0 {
					return usageError{fmt.Errorf("unexpected argument %q", c.Args().First())}
				}
				dir, err := dataDir(c)
				if err != nil {
					return err
				}
				now := time.Now()
				if fs, ok, err := geo.ReadFollowerStatus(dir, now); err != nil {
					return err
				} else if ok {
					return status{Geo: &fs}.printGeo(c.App.Writer)
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
		}},
	}
}

func printPrimaryStatus(w io.Writer, ps geo.PrimaryStatus, now time.Time) error {
	fmt.Fprintf(w, "geo: primary, state version %d", ps.Version)
	if !ps.Running {
		fmt.Fprintf(w, " (the gate is not running; as of %s)", ps.Written.Format(time.RFC3339))
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tCONNECTED\tLAST CONTACT\tVERSION SEEN\tLAG")
	for _, n := range ps.Nodes {
		contact := "never"
		if !n.LastContact.IsZero() {
			contact = fmt.Sprintf("%s (%s ago)", n.LastContact.Format(time.RFC3339), now.Sub(n.LastContact).Round(time.Second))
		}
		fmt.Fprintf(tw, "%s\t%v\t%s\t%d\t%d\n", n.Name, n.Connected, contact, n.VersionSeen, n.Lag)
	}
	return tw.Flush()
}
