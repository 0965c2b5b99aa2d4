package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"
	"golang.org/x/crypto/ssh"

	"github.com/gitgate/gitgate/access"
	"github.com/gitgate/gitgate/audit"
)

// maxKeyFile bounds a file read by "user key add --file".
const maxKeyFile = 1 << 20

func userCommand() *cli.Command {
	return &cli.Command{
		Name:  "user",
		Usage: "manage users and their SSH keys",
		Description: "Users live in <data-dir>/access.yaml. A user signs in over SSH with one of their\n" +
			"keys and over HTTP with an access token (see \"gitgate token\"). Admins may read\n" +
			"and write every repository. The running server picks up changes within seconds.",
		Subcommands: []*cli.Command{
			{
				Name:      "add",
				Usage:     "add a user",
				ArgsUsage: "NAME",
				Description: "NAME is 1 to 255 letters, digits, '.', '_' and '-', and must differ from\n" +
					"every other user name regardless of case.",
				Flags:  []cli.Flag{&cli.BoolFlag{Name: "admin", Usage: "make the user an admin, who may do everything"}},
				Action: withArgs(1, 1, userAdd),
			},
			{
				Name:        "remove",
				Usage:       "remove a user, with their keys and tokens",
				ArgsUsage:   "NAME",
				Description: "Also takes the user out of every access rule.",
				Action:      withArgs(1, 1, userRemove),
			},
			{
				Name:        "list",
				Usage:       "list users",
				ArgsUsage:   " ",
				Description: "Prints each user's name, whether they are an admin, and how many SSH keys and\naccess tokens they have.",
				Action:      withArgs(0, 0, userList),
			},
			{
				Name:  "key",
				Usage: "manage a user's SSH keys",
				Subcommands: []*cli.Command{
					{
						Name:      "add",
						Usage:     "add SSH public keys to a user",
						ArgsUsage: "NAME (KEY-LINE | --file PATH)",
						Description: "KEY-LINE is one line of an authorized_keys or .pub file, \"TYPE BASE64 [COMMENT]\",\n" +
							"without options. --file adds every key in a file, skipping blank lines and\n" +
							"# comments. Accepted: ed25519, ecdsa, their sk- (FIDO) variants and rsa of at\n" +
							"least 2048 bits. A key may belong to only one user.",
						Flags:  []cli.Flag{&cli.StringFlag{Name: "file", Usage: "read keys from `PATH`, e.g. ~/.ssh/id_ed25519.pub"}},
						Action: withArgs(1, -1, userKeyAdd),
					},
					{
						Name:        "remove",
						Usage:       "remove an SSH key from a user",
						ArgsUsage:   "NAME (FINGERPRINT | COMMENT)",
						Description: "Give the key's SHA256 fingerprint, as \"gitgate user key list\" shows it, or its\ncomment if no other key of the user has the same one.",
						Action:      withArgs(2, 2, userKeyRemove),
					},
					{
						Name:        "list",
						Usage:       "list a user's SSH keys",
						ArgsUsage:   "NAME",
						Description: "Prints each key's type, SHA256 fingerprint and comment.",
						Action:      withArgs(1, 1, userKeyList),
					},
				},
			},
		},
	}
}

func userAdd(c *cli.Context, args []string) error {
	name, admin := args[0], c.Bool("admin")
	ev := &audit.Event{Action: "user.add", New: map[string]any{"user": name, "admin": admin}}
	if err := updateAccess(c, ev, func(f *access.File) error { return f.AddUser(name, admin) }); err != nil {
		return err
	}
	role := "user"
	if admin {
		role = "admin"
	}
	fmt.Fprintf(c.App.Writer, "added %s %s\n", role, name)
	return nil
}

func userRemove(c *cli.Context, args []string) error {
	ev := &audit.Event{Action: "user.remove", Old: map[string]any{"user": args[0]}}
	if err := updateAccess(c, ev, func(f *access.File) error {
		if u := f.User(args[0]); u != nil {
			ev.Old = map[string]any{"user": u.Name, "admin": u.Admin, "keys": len(u.Keys), "tokens": len(u.Tokens)}
		}
		return f.RemoveUser(args[0])
	}); err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "removed user %s\n", args[0])
	return nil
}

func userList(c *cli.Context, _ []string) error {
	f, err := loadAccess(c)
	if err != nil {
		return err
	}
	t := newTable(c.App.Writer, "NAME", "ADMIN", "KEYS", "TOKENS")
	for _, u := range f.Users {
		t.row(u.Name, yesNo(u.Admin), strconv.Itoa(len(u.Keys)), strconv.Itoa(len(u.Tokens)))
	}
	return t.flush()
}

func userKeyAdd(c *cli.Context, args []string) error {
	name, path := args[0], c.String("file")
	var lines []keyLine
	switch {
	case path != "" && len(args) > 1:
		return usageError{errors.New("user key add: give either KEY-LINE or --file, not both")}
	case path != "":
		var err error
		if lines, err = readKeyFile(path); err != nil {
			return err
		}
	case len(args) == 1:
		return usageError{errors.New("user key add: missing KEY-LINE or --file PATH")}
	default:
		// An unquoted key line arrives as several arguments.
		lines = []keyLine{{text: strings.Join(args[1:], " ")}}
	}
	var added []ssh.PublicKey
	ev := &audit.Event{Action: "user.key.add"}
	err := updateAccess(c, ev, func(f *access.File) error {
		added = added[:0]
		var fps []string
		for _, l := range lines {
			key, err := f.AddKey(name, l.text)
			if err != nil {
				return l.wrap(err)
			}
			added = append(added, key)
			fps = append(fps, access.Fingerprint(key))
		}
		ev.New = map[string]any{"user": name, "keys": fps}
		return nil
	})
	if err != nil {
		return err
	}
	for _, key := range added {
		fmt.Fprintf(c.App.Writer, "added %s key %s to %s\n", key.Type(), access.Fingerprint(key), name)
	}
	return nil
}

// keyLine is a key to add and where it was read from.
type keyLine struct {
	text string
	path string
	line int
}

func (l keyLine) wrap(err error) error {
	if l.path == "" {
		return err
	}
	return fmt.Errorf("%s:%d: %w", l.path, l.line, err)
}

// readKeyFile reads the keys of an authorized_keys or .pub file.
func readKeyFile(path string) ([]keyLine, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	sc := bufio.NewScanner(io.LimitReader(fh, maxKeyFile))
	sc.Buffer(make([]byte, 0, 64<<10), maxKeyFile)
	var lines []keyLine
	for n := 1; sc.Scan(); n++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		lines = append(lines, keyLine{text: text, path: path, line: n})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(lines) == 0 {
		return nil, fmt.Errorf("%s: no keys found", path)
	}
	return lines, nil
}

func userKeyRemove(c *cli.Context, args []string) error {
	var removed access.Key
	ev := &audit.Event{Action: "user.key.remove"}
	err := updateAccess(c, ev, func(f *access.File) error {
		var err error
		removed, err = f.RemoveKey(args[0], args[1])
		ev.Old = map[string]any{"user": args[0], "key": keyAudit(removed)}
		return err
	})
	if err != nil {
		return err
	}
	desc := removed.Line
	if key, _, err := access.ParseKey(removed.Line); err == nil {
		desc = key.Type() + " key " + access.Fingerprint(key)
	}
	fmt.Fprintf(c.App.Writer, "removed %s from %s\n", desc, args[0])
	return nil
}

func userKeyList(c *cli.Context, args []string) error {
	f, err := loadAccess(c)
	if err != nil {
		return err
	}
	u := f.User(args[0])
	if u == nil {
		return fmt.Errorf("user %q: %w", args[0], access.ErrNotFound)
	}
	t := newTable(c.App.Writer, "TYPE", "FINGERPRINT", "COMMENT")
	for _, k := range u.Keys {
		key, comment, err := access.ParseKey(k.Line)
		if err != nil { // the file was validated on load; be safe anyway
			return err
		}
		t.row(key.Type(), access.Fingerprint(key), comment)
	}
	return t.flush()
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// keyAudit names a key in the audit log by its fingerprint.
func keyAudit(k access.Key) string {
	if key, _, err := access.ParseKey(k.Line); err == nil {
		return access.Fingerprint(key)
	}
	return ""
}
