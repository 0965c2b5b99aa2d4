package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/user"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/gitgate/gitgate/gitgate"
)

func maintenanceCommand() *cli.Command {
	return &cli.Command{
		Name:  "maintenance",
		Usage: "enable, disable or show read-only maintenance mode",
		Description: "Acts on the maintenance state in the data dir. A running gate on this host\n" +
			"sees a change within milliseconds; pushes are then refused with:\n" +
			gitgate.MaintenanceMessage,
		Subcommands: []*cli.Command{
			{
				Name:  "enable",
				Usage: "enter read-only maintenance mode: pushes are refused, clones and fetches go on",
				Flags: []cli.Flag{&cli.StringFlag{
					Name:  "message",
					Usage: "banner text shown in status and the API (at most 255 characters)",
				}},
				Action: func(c *cli.Context) error {
					msg := c.String("message")
					return changeMaintenance(c, gitgate.Change{Enabled: ptr(true), Message: &msg})
				},
			},
			{
				Name:  "disable",
				Usage: "leave maintenance mode: pushes are accepted again",
				Action: func(c *cli.Context) error {
					empty := ""
					return changeMaintenance(c, gitgate.Change{Enabled: ptr(false), Message: &empty})
				},
			},
			{
				Name:  "status",
				Usage: "show whether maintenance mode is on, its message, since when and by whom",
				Flags: []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print the state as JSON"}},
				Action: func(c *cli.Context) error {
					dir, err := dataDir(c)
					if err != nil {
						return err
					}
					st, err := gitgate.NewFileStore(dir).Load(c.Context)
					if err != nil {
						return err
					}
					return printState(c.App.Writer, st, c.Bool("json"))
				},
			},
		},
	}
}

func changeMaintenance(c *cli.Context, change gitgate.Change) error {
	if c.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected argument %q", c.Args().First())}
	}
	if change.Message != nil {
		if err := gitgate.ValidateMessage(*change.Message); err != nil {
			return usageError{fmt.Errorf("--message: %w", err)}
		}
	}
	dir, err := dataDir(c)
	if err != nil {
		return err
	}
	change.By = cliActor()
	st, err := gitgate.NewFileStore(dir).Apply(c.Context, change)
	if err != nil {
		return err
	}
	return printState(c.App.Writer, st, false)
}

// cliActor names the person at the terminal for the state's "by" field.
func cliActor() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return "cli:" + u.Username
	}
	if name := os.Getenv("USER"); name != "" {
		return "cli:" + name
	}
	return "cli"
}

// printState prints a maintenance state for people, or as JSON.
func printState(w io.Writer, st gitgate.State, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	}
	mode := "disabled"
	if st.Enabled {
		mode = "enabled"
	}
	fmt.Fprintf(w, "maintenance mode: %s\n", mode)
	if st.Message != "" {
		fmt.Fprintf(w, "message:          %s\n", st.Message)
	}
	if !st.Since.IsZero() {
		fmt.Fprintf(w, "since:            %s\n", st.Since.Format(time.RFC3339))
	}
	if st.By != "" {
		fmt.Fprintf(w, "by:               %s\n", st.By)
	}
	_, err := fmt.Fprintf(w, "version:          %d\n", st.Version)
	return err
}

func ptr[T any](v T) *T { return &v }
