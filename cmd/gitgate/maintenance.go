package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/gitgate/gitgate/api"
	"github.com/gitgate/gitgate/audit"
	"github.com/gitgate/gitgate/geo"
	"github.com/gitgate/gitgate/gitgate"
	"github.com/gitgate/gitgate/internal/atomicfile"
	"github.com/gitgate/gitgate/pgstore"
)

// remoteFlags select a running gate's API instead of the local data dir.
func remoteFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{
			Name:    "url",
			Usage:   "act on the gate at this URL through its API instead of on the local data dir",
			EnvVars: []string{"GITGATE_URL"},
		},
		&cli.StringFlag{
			Name:    "token",
			Usage:   "an admin's access token, for --url",
			EnvVars: []string{"GITGATE_TOKEN"},
		},
	}
}

func maintenanceCommand() *cli.Command {
	return &cli.Command{
		Name:  "maintenance",
		Usage: "enable, disable or show read-only maintenance mode",
		Description: "Acts on the maintenance state in the data dir, or with --url on a running\n" +
			"gate through its API. A running gate on this host sees a local change within\n" +
			"milliseconds; pushes are then refused with:\n" +
			gitgate.MaintenanceMessage,
		Subcommands: []*cli.Command{
			{
				Name:  "enable",
				Usage: "enter read-only maintenance mode: pushes are refused, clones and fetches go on",
				Description: "Returns once no ref can change any more: pushes that passed their check just\n" +
					"before the switch and are committing their refs are waited for (at most\n" +
					"--fence-timeout; then it fails, listing them, with maintenance enabled).\n" +
					"With --wait, returns only when no push is running any more through the gate\n" +
					"(or fails after --timeout, listing what still runs): then it is safe to start\n" +
					"the maintenance work.",
				Flags: append(remoteFlags(),
					&cli.StringFlag{Name: "message", Usage: "banner text shown in status and the API (at most 255 characters)"},
					fenceTimeoutFlag(),
					&cli.BoolFlag{Name: "wait", Usage: "wait until no push is in flight"},
					&cli.DurationFlag{Name: "timeout", Usage: "with --wait: give up after this long", Value: 10 * time.Minute},
				),
				Action: func(c *cli.Context) error {
					msg := c.String("message")
					if err := changeMaintenance(c, true, &msg); err != nil {
						return err
					}
					if c.Bool("wait") {
						return waitForDrain(c)
					}
					return nil
				},
			},
			{
				Name:  "disable",
				Usage: "leave maintenance mode: pushes are accepted again",
				Flags: remoteFlags(),
				Action: func(c *cli.Context) error {
					empty := ""
					return changeMaintenance(c, false, &empty)
				},
			},
			{
				Name:  "reset",
				Usage: "replace a missing, broken or corrupt state file with a fresh one (disabled unless --enable)",
				Description: "Once a data dir has had a maintenance state, a missing state file (or a link\n" +
					"to one whose target is gone) is never read as \"not in maintenance\": the gate,\n" +
					"the hook and the CLI refuse pushes and changes until this command writes a new\n" +
					"one. Its version is one above the highest this data dir has held, so versions\n" +
					"never go back and Geo secondaries follow. A running gate sees it at once.\n" +
					"A state that reads fine is left alone unless --force: use enable or disable.",
				Flags: []cli.Flag{
					&cli.BoolFlag{Name: "enable", Usage: "write a state in maintenance mode, so that pushes stay refused"},
					&cli.BoolFlag{Name: "force", Usage: "reset even a state that reads fine"},
					&cli.StringFlag{Name: "message", Usage: "with --enable: banner text (at most 255 characters)"},
					fenceTimeoutFlag(),
				},
				Action: resetMaintenance,
			},
			{
				Name:  "status",
				Usage: "show whether maintenance mode is on, its message, since when, by whom, and what is in flight",
				Flags: append(remoteFlags(), &cli.BoolFlag{Name: "json", Usage: "print the status as JSON"}),
				Action: func(c *cli.Context) error {
					if c.NArg() > 0 {
						return usageError{fmt.Errorf("unexpected argument %q", c.Args().First())}
					}
					st, err := currentStatus(c)
					if err != nil {
						return err
					}
					return st.print(c.App.Writer, c.Bool("json"))
				},
			},
		},
	}
}

// status is what "maintenance status" shows: the state, and what is in
// flight when a running gate could be asked.
type status struct {
	gitgate.State
	InFlight *api.InFlight `json:"in_flight,omitempty"`
	// Geo is set on a Geo secondary: how fresh its copy of the primary's
	// state is.
	Geo *geo.FollowerStatus `json:"geo,omitempty"`
	// SitePushes, with a shared database, are the pushes running on every
	// gate of the site.
	SitePushes *[]pgstore.Remote `json:"site_pushes_in_flight,omitempty"`
	// SitePushesError says why a gate could not list them.
	SitePushesError *string `json:"site_pushes_in_flight_error,omitempty"`
}

func statusFromSettings(s api.Settings) status {
	st := status{State: gitgate.State{Enabled: s.MaintenanceMode, Version: s.MaintenanceModeVersion}}
	if s.MaintenanceModeMessage != nil {
		st.Message = *s.MaintenanceModeMessage
	}
	if s.MaintenanceModeBy != nil {
		st.By = *s.MaintenanceModeBy
	}
	if s.MaintenanceModeSince != nil {
		st.Since, _ = time.Parse(time.RFC3339, *s.MaintenanceModeSince)
	}
	st.InFlight = &s.OperationsInFlight
	if s.SitePushesInFlight != nil {
		pushes := make([]pgstore.Remote, 0, len(*s.SitePushesInFlight))
		for _, p := range *s.SitePushesInFlight {
			pushes = append(pushes, pgstore.Remote{Gate: p.Gate, Service: p.Service, Repo: p.Repo,
				User: p.User, Transport: p.Transport, Started: p.Started})
		}
		st.SitePushes = &pushes
	}
	st.SitePushesError = s.SitePushesError
	return st
}

// gateClient returns a client for --url, or for the local gate's admin
// socket when one is running; nil when there is no gate to ask.
func gateClient(c *cli.Context) (*api.Client, error) {
	if u := c.String("url"); u != "" {
		if c.String("token") == "" {
			return nil, usageError{errors.New("--url needs --token (or GITGATE_TOKEN)")}
		}
		cl, err := api.NewClient(u, c.String("token"))
		if err != nil {
			return nil, usageError{err}
		}
		return cl, nil
	}
	dir, err := dataDir(c)
	if err != nil {
		return nil, err
	}
	sock := filepath.Join(dir, SocketName)
	if _, err := os.Stat(sock); err != nil {
		return nil, nil
	}
	return api.NewSocketClient(sock), nil
}

func changeMaintenance(c *cli.Context, enable bool, message *string) error {
	if c.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected argument %q", c.Args().First())}
	}
	if err := gitgate.ValidateMessage(*message); err != nil {
		return usageError{fmt.Errorf("--message: %w", err)}
	}
	if c.String("url") != "" {
		cl, err := gateClient(c)
		if err != nil {
			return err
		}
		s, err := cl.Update(c.Context, &enable, message)
		if err != nil {
			return err
		}
		return statusFromSettings(s).print(c.App.Writer, false)
	}
	dir, err := dataDir(c)
	if err != nil {
		return err
	}
	if err := refuseOnSecondary(dir); err != nil {
		return err
	}
	site, err := openSite(c, dir)
	if err != nil {
		return err
	}
	defer site.Close()
	if err := site.refuseOnSecondarySite(c.Context, "maintenance mode is not changed", geo.ChangeOnPrimary); err != nil {
		return err
	}
	store := &gitgate.FencedStore{Store: site.stateStore(c), Txns: site.txns(), Timeout: c.Duration("fence-timeout")}
	old, err := store.Load(c.Context)
	if err != nil {
		return err
	}
	// On enable, Apply returns once the ref updates that passed the check
	// before the switch are done; a timeout still changed the state.
	st, err := store.Apply(c.Context, gitgate.Change{Enabled: &enable, Message: message, By: cliActor()})
	if err != nil && !errors.Is(err, gitgate.ErrFenceIncomplete) {
		return err
	}
	if err := site.audit().Record(audit.Event{
		Action: "maintenance.update", Actor: cliActor(), Transport: "cli",
		Old: api.AuditState(old), New: api.AuditState(st),
	}); err != nil {
		fmt.Fprintf(c.App.ErrWriter, "gitgate: warning: %v\n", err)
	}
	if perr := (status{State: st}).print(c.App.Writer, false); perr != nil {
		return perr
	}
	return err
}

// fenceTimeoutFlag bounds how long enabling maintenance waits for the ref
// updates that passed their check before the switch.
func fenceTimeoutFlag() cli.Flag {
	return &cli.DurationFlag{
		Name:    "fence-timeout",
		Usage:   "how long enabling maintenance waits for ref updates that passed their check before the switch",
		Value:   gitgate.DefaultFenceTimeout,
		EnvVars: []string{"GITGATE_FENCE_TIMEOUT"},
	}
}

// localStore is the data dir's state store, saying on stderr when it waits
// for another writer's lock.
func localStore(c *cli.Context, dir string) *gitgate.FileStore {
	store := gitgate.NewFileStore(dir)
	store.LockBusy = func() {
		fmt.Fprintf(c.App.ErrWriter, "gitgate: another process holds the maintenance state lock; waiting up to %s\n", atomicfile.DefaultLockTimeout)
	}
	return store
}

// resetMaintenance writes a fresh state in the local data dir, whatever the
// old file holds, and audits it with the old state or why it was unreadable.
func resetMaintenance(c *cli.Context) error {
	if c.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected argument %q", c.Args().First())}
	}
	msg, enable := c.String("message"), c.Bool("enable")
	if msg != "" && !enable {
		return usageError{errors.New("--message needs --enable")}
	}
	if err := gitgate.ValidateMessage(msg); err != nil {
		return usageError{fmt.Errorf("--message: %w", err)}
	}
	dir, err := dataDir(c)
	if err != nil {
		return err
	}
	if err := refuseOnSecondary(dir); err != nil {
		return err
	}
	site, err := openSite(c, dir)
	if err != nil {
		return err
	}
	defer site.Close()
	if err := site.refuseOnSecondarySite(c.Context, "maintenance mode is not changed", geo.ChangeOnPrimary); err != nil {
		return err
	}
	store := site.stateStore(c)
	ev := audit.Event{Action: "maintenance.reset", Actor: cliActor(), Transport: "cli"}
	old, err := store.Load(c.Context)
	switch {
	case err != nil:
		ev.Detail = "old state unreadable: " + err.Error()
	case !c.Bool("force"):
		mode := "disabled"
		if old.Enabled {
			mode = "enabled"
		}
		return fmt.Errorf("the maintenance state reads fine (maintenance %s, version %d): nothing to reset; "+
			"use \"maintenance enable\" or \"maintenance disable\", or reset --force to replace it anyway", mode, old.Version)
	default:
		ev.Old = api.AuditState(old)
	}
	st, err := store.Reset(c.Context, gitgate.Change{Enabled: &enable, Message: &msg, By: cliActor()})
	if err != nil {
		return err
	}
	ev.New = api.AuditState(st)
	if err := site.audit().Record(ev); err != nil {
		fmt.Fprintf(c.App.ErrWriter, "gitgate: warning: %v\n", err)
	}
	if err := (status{State: st}).print(c.App.Writer, false); err != nil {
		return err
	}
	if st.Enabled {
		// As enable does: return once no ref can change any more.
		return site.txns().WaitTxns(c.Context, c.Duration("fence-timeout"))
	}
	return nil
}

// currentStatus reads the state through the API (--url), or from the data
// dir, with the in-flight counts from the local gate when one runs.
func currentStatus(c *cli.Context) (status, error) {
	cl, err := gateClient(c)
	if err != nil {
		return status{}, err
	}
	if c.String("url") != "" {
		s, err := cl.Settings(c.Context)
		if err != nil {
			return status{}, err
		}
		return statusFromSettings(s), nil
	}
	dir, err := dataDir(c)
	if err != nil {
		return status{}, err
	}
	site, err := openSite(c, dir)
	if err != nil {
		return status{}, err
	}
	defer site.Close()
	st, err := site.stateStore(c).Load(c.Context)
	if err != nil {
		return status{}, err
	}
	out := status{State: st}
	if pushes, ok, err := site.pushesInFlight(c.Context); ok {
		if err != nil {
			return status{}, err
		}
		out.SitePushes = &pushes
	}
	if fs, ok, err := geo.ReadFollowerStatus(dir, time.Now()); err == nil && ok {
		out.Geo = &fs
	}
	if cl != nil {
		if s, err := cl.Settings(c.Context); err == nil {
			out.InFlight = &s.OperationsInFlight
		}
	}
	return out, nil
}

// waitForDrain polls the gate until no write is in flight.
func waitForDrain(c *cli.Context) error {
	if c.String("url") == "" && databaseURL(c) != "" {
		return waitForSiteDrain(c)
	}
	cl, err := gateClient(c)
	if err != nil || cl == nil {
		return err // no gate running here: nothing can be in flight through it
	}
	ctx, cancel := context.WithTimeout(c.Context, c.Duration("timeout"))
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	announced := false
	for {
		s, err := cl.Settings(ctx)
		if err != nil && ctx.Err() == nil {
			return err
		}
		if err == nil && s.SitePushesError != nil {
			err = errors.New(*s.SitePushesError)
		}
		writes, where, none := s.OperationsInFlight.Writes, "", ""
		if s.SitePushesInFlight != nil {
			// A gate on a shared database answers for the whole site.
			writes, where, none = len(*s.SitePushesInFlight), " on the site's gates", " on any gate of the site"
		}
		if err == nil && writes == 0 {
			fmt.Fprintf(c.App.Writer, "no push in flight%s: safe to start the maintenance work\n", none)
			return nil
		}
		if err == nil && !announced {
			fmt.Fprintf(c.App.Writer, "waiting for %d push(es) in flight%s to finish...\n", writes, where)
			announced = true
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			s, err := cl.Settings(context.WithoutCancel(c.Context))
			if err != nil {
				return cli.Exit(fmt.Sprintf("timed out after %s waiting for pushes to finish", c.Duration("timeout")), 1)
			}
			var lines []string
			for _, p := range statusFromSettings(s).sitePushes() {
				lines = append(lines, "  "+describeRemote(p))
			}
			for _, r := range s.OperationsInFlight.Running {
				if s.SitePushesInFlight == nil && r.Service == string(gitgate.ReceivePack) {
					lines = append(lines, fmt.Sprintf("  %s %s by %s over %s, running since %s",
						r.Service, r.Repo, r.User, r.Transport, r.Started.Format(time.RFC3339)))
				}
			}
			return cli.Exit(fmt.Sprintf("timed out after %s; still in flight:\n%s", c.Duration("timeout"), strings.Join(lines, "\n")), 1)
		}
	}
}

// refuseOnSecondary refuses local changes on a Geo secondary site: its
// state follows the primary's. A marker that cannot be read refuses too.
func refuseOnSecondary(dataDir string) error {
	return refuseOnGeoSecondary(dataDir, "maintenance mode is not changed", geo.ChangeOnPrimary)
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

// print prints a status for people, or as JSON.
func (st status) print(w io.Writer, asJSON bool) error {
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
	fmt.Fprintf(w, "version:          %d\n", st.Version)
	if st.InFlight != nil {
		fmt.Fprintf(w, "in flight:        %d push(es), %d clone(s)/fetch(es)\n", st.InFlight.Writes, st.InFlight.Reads)
	}
	if st.SitePushesError != nil {
		fmt.Fprintf(w, "site in flight:   unknown: %s\n", *st.SitePushesError)
	}
	if st.SitePushes != nil {
		fmt.Fprintf(w, "site in flight:   %d push(es) on the site's gates\n", len(*st.SitePushes))
		for _, p := range *st.SitePushes {
			fmt.Fprintf(w, "  %s\n", describeRemote(p))
		}
	}
	return st.printGeo(w)
}

// printGeo prints a secondary's view of the primary, if any.
func (st status) printGeo(w io.Writer) error {
	if g := st.Geo; g != nil {
		fmt.Fprintf(w, "geo:              secondary of %s\n", g.Primary)
		switch {
		case g.Connected:
			fmt.Fprintf(w, "following:        live (last contact %s)\n", g.LastContact.Format(time.RFC3339))
		case g.LastContact.IsZero():
			fmt.Fprintf(w, "following:        never reached the primary: %s\n", g.LastError)
		default:
			fmt.Fprintf(w, "following:        STALE by %s (last contact %s): %s\n",
				g.Stale.Round(time.Second), g.LastContact.Format(time.RFC3339), g.LastError)
		}
	}
	return nil
}

func ptr[T any](v T) *T { return &v }

// sitePushes is SitePushes, or none.
func (st status) sitePushes() []pgstore.Remote {
	if st.SitePushes == nil {
		return nil
	}
	return *st.SitePushes
}
