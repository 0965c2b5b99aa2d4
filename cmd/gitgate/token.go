package main

import (
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/gitgate/gitgate/access"
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
					"stops working at 00:00 UTC on that day) or an RFC 3339 time.",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "name", Usage: "a label for the token, e.g. ci or laptop"},
					&cli.StringFlag{Name: "expires", Usage: "stop working at `DATE` (YYYY-MM-DD or RFC 3339); default never"},
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
	var secret string
	var tok access.Token
	err := updateAccess(c, func(f *access.File) error {
		var err error
		secret, tok, err = f.CreateToken(user, opts, time.Now())
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
	err := updateAccess(c, func(f *access.File) error {
		var err error
		tok, err = f.RevokeToken(args[0], args[1], time.Now())
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
	t := newTable(c.App.Writer, "USER", "ID", "NAME", "CREATED", "EXPIRES", "STATUS")
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
			t.row(u.Name, tok.ID, name, formatTime(tok.Created), expires, string(tok.Status(now)))
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
