package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/gitgate/gitgate/access"
	"github.com/gitgate/gitgate/audit"
)

func tokenCommand() *cli.Command {
	return &cli.Command{
		Name:  "token",
		Usage: "manage access tokens for HTTP",
		Description: "An access token signs a user in over HTTP: as the password of any user name\n" +
			"(https://oauth2:TOKEN@host/group/repo.git), in a PRIVATE-TOKEN header or as\n" +
			"\"Authorization: Bearer TOKEN\". Only a SHA-256 of each token is stored in\n" +
			"<data-dir>/access.yaml, so a token is shown once, when it is created.",
		Subcommands: []*cli.Command{
			{
				Name:      "create",
				Usage:     "create an access token for a user and print it",
				ArgsUsage: "USER",
				Description: "Prints the new token on standard output, alone on its line, and a reminder on\n" +
					"standard error: the token cannot be shown again. DATE is YYYY-MM-DD (the token\n" +
					"stops working at 00:00 UTC on that day) or an RFC 3339 time.\n\n" +
					"Scopes limit the token as GitLab's personal access token scopes do:\n" +
					"  read_repository   clone and fetch over HTTP\n" +
					"  write_repository  push over HTTP (and clone and fetch)\n" +
					"  api               the settings API (for an admin), and, as in GitLab, full\n" +
					"                    read and write access to repositories\n" +
					"Within them the user's own access rules still decide. Without --scope the\n" +
					"token is unscoped and has every right, like tokens made before scopes existed.",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "name", Usage: "a label for the token, e.g. ci or laptop"},
					&cli.StringFlag{Name: "expires", Usage: "stop working at `DATE` (YYYY-MM-DD or RFC 3339); default never"},
					&cli.StringSliceFlag{Name: "scope", Usage: "limit the token to `SCOPE`: read_repository, write_repository or api (repeat it, or give a comma list); default all"},
				},
				Action: withArgs(1, 1, tokenCreate),
			},
			{
				Name:        "revoke",
				Usage:       "revoke an access token",
				ArgsUsage:   "USER ID",
				Description: "ID is the token's id as \"gitgate token list\" shows it. The token stops working\nat once and stays listed as revoked.",
				Action:      withArgs(2, 2, tokenRevoke),
			},
			{
				Name:        "list",
				Usage:       "list access tokens, without their secrets",
				ArgsUsage:   "[USER]",
				Description: "Prints every token of USER, or of all users: id, name, creation and expiry\ntimes, and status (active, expired or revoked).",
				Action:      withArgs(0, 1, tokenList),
			},
		},
	}
}

func tokenCreate(c *cli.Context, args []string) error {
	user := args[0]
	opts := access.TokenOptions{Name: c.String("name")}
	if s := c.String("expires"); s != "" {
		t, err := parseExpiry(s)
		if err != nil {
			return usageError{fmt.Errorf("token create: --expires: %w", err)}
		}
		opts.Expires = t
	}
	scopes, err := access.ParseScopes(c.StringSlice("scope"))
	if err != nil {
		return usageError{fmt.Errorf("token create: --scope: %w", err)}
	}
	opts.Scopes = scopes
	var secret string
	var tok access.Token
	ev := &audit.Event{Action: "token.create"}
	err = updateAccess(c, ev, func(f *access.File) error {
		var err error
		secret, tok, err = f.CreateToken(user, opts, time.Now())
		ev.New = tokenAudit(user, tok)
		return err
	})
	if err != nil {
		return err
	}
	fmt.Fprintln(c.App.Writer, secret)
	fmt.Fprintf(c.App.ErrWriter, "Created token %s for %s. Copy it now: it will not be shown again.\n", tok.ID, user)
	return nil
}

// parseExpiry accepts YYYY-MM-DD (midnight UTC) or an RFC 3339 time.
func parseExpiry(s string) (time.Time, error) {
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is neither YYYY-MM-DD nor an RFC 3339 time", s)
	}
	return t, nil
}

func tokenRevoke(c *cli.Context, args []string) error {
	var tok access.Token
	ev := &audit.Event{Action: "token.revoke"}
	err := updateAccess(c, ev, func(f *access.File) error {
		var err error
		tok, err = f.RevokeToken(args[0], args[1], time.Now())
		ev.Old = tokenAudit(args[0], tok)
		return err
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "revoked token %s of %s (revoked at %s)\n", tok.ID, args[0], formatTime(tok.Revoked))
	return nil
}

func tokenList(c *cli.Context, args []string) error {
	f, err := loadAccess(c)
	if err != nil {
		return err
	}
	users := f.Users
	if len(args) == 1 {
		u := f.User(args[0])
		if u == nil {
			return fmt.Errorf("user %q: %w", args[0], access.ErrNotFound)
		}
		users = []access.User{*u}
	}
	now := time.Now()
	t := newTable(c.App.Writer, "USER", "ID", "NAME", "CREATED", "EXPIRES", "SCOPES", "STATUS")
	for _, u := range users {
		for _, tok := range u.Tokens {
			expires := "never"
			if !tok.Expires.IsZero() {
				expires = formatTime(tok.Expires)
			}
			name := tok.Name
			if name == "" {
				name = "-"
			}
			t.row(u.Name, tok.ID, name, formatTime(tok.Created), expires, scopeList(tok.Scopes), string(tok.Status(now)))
		}
	}
	return t.flush()
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

// scopeList shows a token's scopes; "all" for an unscoped token.
func scopeList(scopes []string) string {
	if len(scopes) == 0 {
		return "all"
	}
	return strings.Join(scopes, ",")
}

// tokenAudit is a token as recorded in the audit log: never its secret or
// its hash.
func tokenAudit(user string, t access.Token) map[string]any {
	m := map[string]any{"user": user, "id": t.ID, "name": t.Name, "scopes": scopeList(t.Scopes)}
	if !t.Expires.IsZero() {
		m["expires"] = formatTime(t.Expires)
	}
	return m
}
