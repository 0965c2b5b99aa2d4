package main

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/gitgate/gitgate/access"
	"github.com/gitgate/gitgate/audit"
)

const accessDescription = `Rules in <data-dir>/access.yaml grant read or write on repositories. A
pattern is an exact name ("group/name"), a group's direct children
("group/*") or everything below a group ("group/**"). Grants go to named
users, to every signed-in user (--signed-in) or to everyone, signed in or
not (--anonymous). Admins may do everything.

For a repository, only the most specific matching rule counts: an exact name
beats any wildcard, a wildcard after more literal segments beats one after
fewer, and "*" beats "**" after the same segments. Within that rule a user
gets the highest grant that applies to them. A more specific rule replaces
the wider ones rather than adding to them, so a rule for "group/secret" that
grants bob read hides the repository from everyone else. No rule means no
access.

The running server picks up changes within seconds.`

func accessCommand() *cli.Command {
	return &cli.Command{
		Name:        "access",
		Usage:       "grant and revoke access to repositories",
		Description: accessDescription,
		Subcommands: []*cli.Command{
			{
				Name:      "grant",
				Usage:     "grant read or write on the repositories matching a pattern",
				ArgsUsage: "PATTERN (--user NAME... | --signed-in | --anonymous) --level read|write",
				Description: "Sets the level of the given grantees in the rule for PATTERN, adding the rule if\n" +
					"needed. It sets rather than raises: granting read to a user who had write leaves\n" +
					"them with read. Users must exist. Granting write to --anonymous lets anyone who\n" +
					"can reach the gate push without signing in.",
				Flags: append(granteeFlags(), &cli.StringFlag{
					Name:  "level",
					Usage: "access to grant: read or write (required)",
				}),
				Action: withArgs(1, 1, accessGrant),
			},
			{
				Name:      "revoke",
				Usage:     "revoke grants from the rule for a pattern, or remove the rule",
				ArgsUsage: "PATTERN (--user NAME... | --signed-in | --anonymous | --all)",
				Description: "Removes the given grants from the rule for PATTERN. The rule stays even when it\n" +
					"grants nothing, because it still hides its repositories from less specific\n" +
					"rules; --all removes the rule itself, so that the next less specific rule applies.",
				Flags: append(granteeFlags(), &cli.BoolFlag{
					Name:  "all",
					Usage: "remove the whole rule",
				}),
				Action: withArgs(1, 1, accessRevoke),
			},
			{
				Name:        "list",
				Usage:       "list the access rules",
				ArgsUsage:   " ",
				Description: "Prints one line per grant: pattern, grantee and level, in file order.",
				Action:      withArgs(0, 0, accessList),
			},
		},
	}
}

func granteeFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringSliceFlag{Name: "user", Aliases: []string{"u"}, Usage: "a user (repeat or separate with commas)"},
		&cli.BoolFlag{Name: "signed-in", Usage: "every signed-in user"},
		&cli.BoolFlag{Name: "anonymous", Usage: "everyone, signed in or not"},
	}
}

func grantee(c *cli.Context) access.Grantee {
	return access.Grantee{Users: c.StringSlice("user"), SignedIn: c.Bool("signed-in"), Anonymous: c.Bool("anonymous")}
}

func accessGrant(c *cli.Context, args []string) error {
	pattern, to := args[0], grantee(c)
	if len(to.Users) == 0 && !to.SignedIn && !to.Anonymous {
		return usageError{errors.New("access grant: say to whom: --user NAME, --signed-in or --anonymous")}
	}
	if c.String("level") == "" {
		return usageError{errors.New("access grant: --level read or --level write is required")}
	}
	level, err := access.ParseLevel(c.String("level"))
	if err != nil {
		return usageError{fmt.Errorf("access grant: --level: %w", err)}
	}
	ev := &audit.Event{Action: "access.grant", New: map[string]any{"pattern": pattern, "level": string(level), "to": describeGrantee(to)}}
	if err := updateAccess(c, ev, func(f *access.File) error { return f.Grant(pattern, to, level) }); err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "granted %s on %s to %s\n", level, pattern, describeGrantee(to))
	if to.Anonymous && level == access.LevelWrite {
		fmt.Fprintf(c.App.ErrWriter, "warning: anyone who can reach the gate can now push to %s without signing in\n", pattern)
	}
	return nil
}

func accessRevoke(c *cli.Context, args []string) error {
	pattern, from := args[0], grantee(c)
	none := len(from.Users) == 0 && !from.SignedIn && !from.Anonymous
	switch {
	case c.Bool("all") && !none:
		return usageError{errors.New("access revoke: --all removes the whole rule; give no other grantee")}
	case c.Bool("all"):
		ev := &audit.Event{Action: "access.remove_rule", Old: map[string]any{"pattern": pattern}}
		if err := updateAccess(c, ev, func(f *access.File) error {
			if r := f.Rule(pattern); r != nil {
				ev.Old = ruleAudit(r)
			}
			return f.RemoveRule(pattern)
		}); err != nil {
			return err
		}
		fmt.Fprintf(c.App.Writer, "removed the rule for %s\n", pattern)
		return nil
	case none:
		return usageError{errors.New("access revoke: say from whom: --user NAME, --signed-in, --anonymous, or --all")}
	}
	var empty bool
	ev := &audit.Event{Action: "access.revoke", Detail: "from " + describeGrantee(from)}
	err := updateAccess(c, ev, func(f *access.File) error {
		if r := f.Rule(pattern); r != nil {
			ev.Old = ruleAudit(r)
		}
		if err := f.Revoke(pattern, from); err != nil {
			return err
		}
		r := f.Rule(pattern)
		ev.New = ruleAudit(r)
		empty = len(r.Read) == 0 && len(r.Write) == 0 && r.SignedIn == access.LevelNone && r.Anonymous == access.LevelNone
		return nil
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "revoked access on %s from %s\n", pattern, describeGrantee(from))
	if empty {
		fmt.Fprintf(c.App.Writer, "the rule for %s now grants nothing and hides its repositories from less specific rules; "+
			"remove it with: gitgate access revoke --all %s\n", pattern, pattern)
	}
	return nil
}

func accessList(c *cli.Context, _ []string) error {
	f, err := loadAccess(c)
	if err != nil {
		return err
	}
	tw := newTable(c.App.Writer, "PATTERN", "WHO", "LEVEL")
	for _, r := range f.Rules {
		rows := 0
		row := func(who string, level access.Level) {
			tw.row(r.Pattern, who, string(level))
			rows++
		}
		for _, u := range r.Write {
			row(u, access.LevelWrite)
		}
		for _, u := range r.Read {
			row(u, access.LevelRead)
		}
		if r.SignedIn != access.LevelNone {
			row("(signed in)", r.SignedIn)
		}
		if r.Anonymous != access.LevelNone {
			row("(anonymous)", r.Anonymous)
		}
		if rows == 0 {
			row("(nobody)", "-")
		}
	}
	return tw.flush()
}

func describeGrantee(g access.Grantee) string {
	var who []string
	if len(g.Users) > 0 {
		who = append(who, strings.Join(g.Users, ", "))
	}
	if g.SignedIn {
		who = append(who, "signed-in users")
	}
	if g.Anonymous {
		who = append(who, "anonymous users")
	}
	return strings.Join(who, " and ")
}

// The helpers below are shared by the user, token and access commands.

// loadAccess reads the access file of the data directory.
func loadAccess(c *cli.Context) (*access.File, error) {
	dir, err := dataDir(c)
	if err != nil {
		return nil, err
	}
	s, err := openSite(c, dir)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	return s.accessStore().Load()
}

// updateAccess applies edit to the access file of the data directory and,
// once the file is written, appends ev to the audit log, stamped with the
// CLI's actor. edit may fill ev in (ids known only once it ran). The change
// stands even if the audit log cannot be written; that is reported as a
// warning.
func updateAccess(c *cli.Context, ev *audit.Event, edit func(f *access.File) error) error {
	dir, err := dataDir(c)
	if err != nil {
		return err
	}
	if err := refuseAccessOnSecondary(dir); err != nil {
		return err
	}
	s, err := openSite(c, dir)
	if err != nil {
		return err
	}
	defer s.Close()
	if err := s.refuseAccessOnSecondarySite(c.Context); err != nil {
		return err
	}
	if err := s.accessStore().Update(edit); err != nil {
		return err
	}
	ev.Actor, ev.Transport = cliActor(), "cli"
	if err := s.audit().Record(*ev); err != nil {
		fmt.Fprintf(c.App.ErrWriter, "gitgate: warning: %v\n", err)
	}
	return nil
}

// withArgs makes an action that takes between min and max positional
// arguments (max < 0: any number); other counts are usage errors. Flags
// written after the arguments were moved ahead of them by interspersed.
func withArgs(min, max int, action func(c *cli.Context, args []string) error) cli.ActionFunc {
	return func(c *cli.Context) error {
		args := c.Args().Slice()
		switch {
		case len(args) < min:
			return usageError{fmt.Errorf("%s: missing arguments: want %s", c.Command.FullName(), c.Command.ArgsUsage)}
		case max == 0 && len(args) > 0:
			return usageError{fmt.Errorf("%s: takes no arguments, got %q", c.Command.FullName(), args[0])}
		case max >= 0 && len(args) > max:
			return usageError{fmt.Errorf("%s: too many arguments: want %s", c.Command.FullName(), c.Command.ArgsUsage)}
		}
		return action(c, args)
	}
}

// table prints aligned columns.
type table struct{ tw *tabwriter.Writer }

func newTable(w io.Writer, header ...string) *table {
	t := &table{tw: tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)}
	t.row(header...)
	return t
}

func (t *table) row(cells ...string) { fmt.Fprintln(t.tw, strings.Join(cells, "\t")) }

func (t *table) flush() error { return t.tw.Flush() }

// ruleAudit is a rule as recorded in the audit log.
func ruleAudit(r *access.Rule) map[string]any {
	return map[string]any{"pattern": r.Pattern, "read": r.Read, "write": r.Write,
		"signed_in": string(r.SignedIn), "anonymous": string(r.Anonymous)}
}
