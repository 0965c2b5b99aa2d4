package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/gitgate/gitgate/gitgate"
	"github.com/gitgate/gitgate/hooks"
)

// Environment variables of the pre-receive hook, besides the gate's
// GITGATE_DATA_DIR. Git passes its environment on to hooks, so they reach a
// hook run by any git server.
const (
	envHookStatusURL = "GITGATE_HOOK_STATUS_URL"
	envHookToken     = "GITGATE_HOOK_TOKEN"
	envHookTokenFile = "GITGATE_HOOK_TOKEN_FILE"
	envHookTimeout   = "GITGATE_HOOK_TIMEOUT"
	envHookFailOpen  = "GITGATE_HOOK_FAIL_OPEN"
)

// runPreReceiveHook runs the binary as a repository's hooks/pre-receive, when
// it was linked or copied there. git passes no arguments, so the
// configuration comes from the environment; the repository's own hook, kept
// next to this one by "hooks install", runs after a successful check.
func runPreReceiveHook(ctx context.Context, args []string) int {
	argv := append([]string{"gitgate", "hook", hooks.HookName, "--chained", os.Args[0] + hooks.ChainedSuffix}, args...)
	return exitCode(os.Stderr, run(ctx, os.Stdout, os.Stderr, argv))
}

// hookFlags are the flags of both hook subcommands: where the state is read,
// and the repository's own hook to chain.
func hookFlags(name string) []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{
			Name:    "data-dir",
			Usage:   "the gate's data dir, to read the maintenance state from",
			EnvVars: []string{gitgate.EnvDataDir},
		},
		&cli.StringFlag{
			Name:    "database-url",
			Usage:   "the site's PostgreSQL `URL`, to read the state from instead of the data dir",
			EnvVars: []string{EnvDatabaseURL},
		},
		&cli.StringFlag{
			Name:    "status-url",
			Usage:   "a running gate's `URL` of GET /api/v4/application/settings, to read the state from instead",
			EnvVars: []string{envHookStatusURL},
		},
		&cli.StringFlag{
			Name:    "token",
			Usage:   "admin `TOKEN` for --status-url, sent as PRIVATE-TOKEN (prefer the environment or --token-file)",
			EnvVars: []string{envHookToken},
		},
		&cli.StringFlag{
			Name:    "token-file",
			Usage:   "`FILE` holding the token for --status-url",
			EnvVars: []string{envHookTokenFile},
		},
		&cli.DurationFlag{
			Name:    "timeout",
			Usage:   "how long to wait for --status-url",
			Value:   hooks.DefaultStatusTimeout,
			EnvVars: []string{envHookTimeout},
		},
		&cli.BoolFlag{
			Name:    "fail-open",
			Usage:   "let pushes through when the state cannot be read (default: refuse them)",
			EnvVars: []string{envHookFailOpen},
		},
		&cli.StringFlag{
			Name:  "chained",
			Usage: "`PATH` of the repository's own " + name + " hook, run after a successful check",
		},
	}
}

func hookCommand() *cli.Command {
	return &cli.Command{
		Name:  "hook",
		Usage: "run as a git server hook (git runs it; see \"gitgate hooks install\")",
		Subcommands: []*cli.Command{{
			Name:  hooks.HookName,
			Usage: "refuse the push while in read-only maintenance mode",
			Description: "Reads the maintenance state and, in maintenance mode, prints GitLab's refusal\n" +
				"on stderr and exits 1, so git declines every ref update. The state comes from\n" +
				"--status-url when set, else from the site's database (--database-url, or\n" +
				"GITGATE_DATABASE_URL), else from the data dir (--data-dir, or GITGATE_DATA_DIR);\n" +
				"the gate sets both variables for the git processes it starts. With a database, a\n" +
				"push through a gate asks that gate (GITGATE_TXN_SOCKET and GITGATE_TXN_SECRET, set\n" +
				"by the gate) and reads the database itself only when no gate answers there.\n" +
				"When it cannot be read (in time), the push is refused with the reason, unless\n" +
				"--fail-open; so it is on SIGINT or SIGTERM, and when the git process that runs it\n" +
				"dies. After a successful check it runs the --chained hook, if that exists, with\n" +
				"the same stdin, and exits with its status.",
			Flags: hookFlags(hooks.HookName),
			Action: func(c *cli.Context) error {
				if c.Args().Present() {
					return usageError{fmt.Errorf("hook %s takes no arguments", hooks.HookName)}
				}
				// The hook must not outlive the git process that runs it:
				// when git dies, SIGTERM ends the check like any signal
				// (the push is refused, exit status 1).
				dieWithParent()
				src := hookStateSource(c)
				if d, ok := src.(dbHookSource); ok && c.String("data-dir") != "" {
					// The early check may ask the local gate, which holds
					// the database's state in memory; the ref transaction
					// hook reads the database itself.
					d.gateSocket = filepath.Join(c.String("data-dir"), SocketName)
					src = d
				}
				opts := hooks.Options{
					Source:   src,
					FailOpen: c.Bool("fail-open"),
					Chained:  c.String("chained"),
				}
				return exitStatus(hooks.PreReceive(c.Context, opts, c.App.Reader, c.App.Writer, c.App.ErrWriter))
			},
		}, {
			Name:      hooks.TxnHookName,
			Usage:     "check the state again when a push commits its refs, and register the update",
			ArgsUsage: "prepared|committed|aborted",
			Description: "Git runs it at each step of a ref transaction. For a push (git receive-pack),\n" +
				"in \"prepared\" it first registers the update in <data-dir>/" + gitgate.TxnDirName + " (with a\n" +
				"database: in the database, in one transaction with the read, done by the gate\n" +
				"that runs the push when it gave the hook its socket), then reads\n" +
				"the state: in maintenance mode, or when the state cannot be read (unless\n" +
				"--fail-open), it prints the refusal and exits 1, so git aborts the update.\n" +
				"\"committed\" and \"aborted\" remove the registration. \"maintenance enable\" waits\n" +
				"for the registered updates, so no ref changes once it has returned. Other\n" +
				"git commands (gc, pack-refs, fetch) and processes with " + gitgate.EnvReplication + "=1 (the\n" +
				"gate's own replication) are not checked. With --status-url the state is\n" +
				"checked, but nothing is registered: enable cannot wait for those updates.\n" +
				"The --chained hook, if it exists, runs after a successful check.",
			Flags: hookFlags(hooks.TxnHookName),
			Action: func(c *cli.Context) error {
				if c.NArg() != 1 {
					return usageError{fmt.Errorf("hook %s takes one argument, the transaction state", hooks.TxnHookName)}
				}
				// As for pre-receive: never outlive git; a signal in
				// "prepared" refuses the update (fail closed).
				dieWithParent()
				src := hookStateSource(c)
				gitPID := os.Getppid()
				opts := hooks.TxnOptions{
					Source:   src,
					FailOpen: c.Bool("fail-open"),
					Chained:  c.String("chained"),
					GitPID:   gitPID,
					Fenced:   hooks.IsFenced(gitPID, os.Getenv),
				}
				if wd, err := os.Getwd(); err == nil {
					opts.Info = wd
				}
				switch d := src.(type) {
				case hooks.DataDirSource:
					opts.TxnDir = filepath.Join(d.Dir, gitgate.TxnDirName)
				case dbHookSource:
					// The site's registry: every gate's enable waits for
					// this update, whichever gate installed the hook.
					opts.Registry = newDBTxnRegistry(d, gitPID, opts.Info)
				}
				return exitStatus(hooks.ReferenceTransaction(c.Context, opts, c.Args().First(), c.App.Reader, c.App.Writer, c.App.ErrWriter))
			},
		}, packObjectsHookCommand()},
	}
}

// hookStateSource picks where the hook reads the state: the status URL when
// set, else the data dir given to the hook, before or after "hook". Unlike
// other commands, the hook has no default data dir: it runs inside a
// repository, where "./data" means nothing. Nil means not configured.
func hookStateSource(c *cli.Context) hooks.StateLoader {
	if u := c.String("status-url"); u != "" {
		return hooks.StatusSource{
			URL:       u,
			Token:     c.String("token"),
			TokenFile: c.String("token-file"),
			Timeout:   c.Duration("timeout"),
		}
	}
	if u := databaseURL(c); u != "" {
		return dbHookSource{url: u, timeout: c.Duration("timeout")}
	}
	for _, ctx := range c.Lineage() {
		if ctx.IsSet("data-dir") {
			if dir := ctx.String("data-dir"); dir != "" {
				return hooks.DataDirSource{Dir: dir}
			}
		}
	}
	return nil
}

// exitStatus turns a non-zero exit status into an error that main maps to
// that status, printing nothing. It is wrapped so that urfave/cli does not
// call os.Exit itself.
func exitStatus(code int) error {
	if code == 0 {
		return nil
	}
	return fmt.Errorf("%w", cli.Exit("", code))
}

func hooksCommand() *cli.Command {
	// --repos as for "serve" and "repo"; --root is the name in the hook's docs.
	rootFlag := &cli.StringFlag{
		Name:    "repos",
		Aliases: []string{"root"},
		Usage:   "`DIR` of bare repositories (default: <data-dir>/repositories)",
		EnvVars: []string{"GITGATE_REPOS"},
	}
	scriptFlags := []cli.Flag{
		rootFlag,
		&cli.StringFlag{
			Name:  "binary",
			Usage: "`PATH` of the gitgate binary the hook runs (default: this binary)",
		},
		&cli.StringFlag{
			Name:  "status-url",
			Usage: "make the hook ask a running gate at `URL` (GET /api/v4/application/settings) instead of reading the data dir",
		},
		&cli.StringFlag{
			Name:  "token-file",
			Usage: "`FILE` holding the admin token the hook sends to --status-url",
		},
		&cli.BoolFlag{
			Name:  "fail-open",
			Usage: "make the hook let pushes through when the state cannot be read",
		},
	}
	return &cli.Command{
		Name:  "hooks",
		Usage: "install, remove or check the pre-receive and reference-transaction hooks in the repositories",
		Description: "The hooks refuse pushes during maintenance mode whatever way they reach the\n" +
			"repositories (git daemon, git-shell, a local push...); the reference-transaction\n" +
			"hook checks again when refs are committed, so that \"maintenance enable\" can\n" +
			"wait for the updates already past the check. A hook that is already there is\n" +
			"kept and runs after the check; uninstall puts it back.\n" +
			"Without REPO arguments, every repository under the root is concerned.",
		Subcommands: []*cli.Command{
			{
				Name:      "install",
				Usage:     "install the hooks (again: they are rewritten only where they changed)",
				ArgsUsage: "[REPO...]",
				Flags:     scriptFlags,
				Action:    hooksInstall,
			},
			{
				Name:      "uninstall",
				Usage:     "remove the hooks and restore the repository's own ones",
				ArgsUsage: "[REPO...]",
				Flags:     []cli.Flag{rootFlag},
				Action:    hooksUninstall,
			},
			{
				Name:      "status",
				Usage:     "show whether each repository has the hooks that install would write",
				ArgsUsage: "[REPO...]",
				Flags: append(scriptFlags, &cli.BoolFlag{
					Name:  "check",
					Usage: "exit with status 1 unless every repository has the hook, up to date",
				}),
				Action: hooksStatus,
			},
		},
	}
}

func hooksInstall(c *cli.Context) error {
	in, err := hookInstaller(c)
	if err != nil {
		return err
	}
	repos, err := hookRepos(c)
	if err != nil {
		return err
	}
	return forEachRepo(c, repos, func(r gitgate.Repo) (hooks.Outcome, error) { return in.Install(r.Path) })
}

func hooksUninstall(c *cli.Context) error {
	repos, err := hookRepos(c)
	if err != nil {
		return err
	}
	return forEachRepo(c, repos, func(r gitgate.Repo) (hooks.Outcome, error) { return hooks.Uninstall(r.Path) })
}

// forEachRepo applies op to every repository and prints what it did. It goes
// on after a failure and fails at the end if any repository failed.
func forEachRepo(c *cli.Context, repos []gitgate.Repo, op func(gitgate.Repo) (hooks.Outcome, error)) error {
	failed := 0
	for _, r := range repos {
		outcome, err := op(r)
		if err != nil {
			fmt.Fprintf(c.App.ErrWriter, "gitgate: %s: %v\n", r.Name, err)
			failed++
			continue
		}
		fmt.Fprintf(c.App.Writer, "%s: %s\n", r.Name, outcome)
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d repositories failed", failed, len(repos))
	}
	return nil
}

func hooksStatus(c *cli.Context) error {
	in, err := hookInstaller(c)
	if err != nil {
		return err
	}
	repos, err := hookRepos(c)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "REPOSITORY\tHOOK\tOWN HOOK")
	unprotected := 0
	var errs []error
	for _, r := range repos {
		st, err := in.Inspect(r.Path)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", r.Name, err))
			unprotected++
			continue
		}
		own := "-"
		if st.Chained {
			own = "chained"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", r.Name, st.State, own)
		if st.State != hooks.HookInstalled {
			unprotected++
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if c.Bool("check") && unprotected > 0 {
		return fmt.Errorf("%d of %d repositories do not have the hook as install would write it", unprotected, len(repos))
	}
	return nil
}

// hookInstaller builds the installer from the flags: the script runs this
// binary (or --binary) with the data dir, or with --status-url.
func hookInstaller(c *cli.Context) (*hooks.Installer, error) {
	s := hooks.Script{FailOpen: c.Bool("fail-open")}
	bin := c.String("binary")
	if bin == "" {
		exe, err := selfBinary()
		if err != nil {
			return nil, fmt.Errorf("find the gitgate binary (give --binary): %w", err)
		}
		bin = exe
	}
	var err error
	if s.Binary, err = filepath.Abs(bin); err != nil {
		return nil, fmt.Errorf("gitgate binary: %w", err)
	}
	// A hook that cannot exec its binary refuses every push, with a message
	// from sh that helps nobody.
	if fi, err := os.Stat(s.Binary); err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		return nil, fmt.Errorf("gitgate binary %s is not an executable file", s.Binary)
	}
	if u := c.String("status-url"); u != "" {
		if err := hooks.ValidateStatusURL(u); err != nil {
			return nil, usageError{err}
		}
		s.StatusURL = u
		if f := c.String("token-file"); f != "" {
			if s.TokenFile, err = filepath.Abs(f); err != nil {
				return nil, fmt.Errorf("token file: %w", err)
			}
		}
	} else {
		if c.IsSet("token-file") {
			return nil, usageError{errors.New("--token-file needs --status-url")}
		}
		if s.DataDir, err = dataDir(c); err != nil {
			return nil, err
		}
		// A hook pointed at a missing data dir refuses every push.
		if fi, err := os.Stat(s.DataDir); err != nil || !fi.IsDir() {
			return nil, fmt.Errorf("data dir %s does not exist: the hook would refuse every push; give gitgate --data-dir", s.DataDir)
		}
	}
	in, err := hooks.NewInstaller(s)
	if err != nil {
		return nil, usageError{err}
	}
	return in, nil
}

// hookRepos returns the repositories named on the command line, or all of
// them.
func hookRepos(c *cli.Context) ([]gitgate.Repo, error) {
	dir, err := dataDir(c)
	if err != nil {
		return nil, err
	}
	root := reposDir(c, dir)
	res, err := gitgate.NewResolver(root)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("repository root %s does not exist (give --repos)", root)
	}
	if err != nil {
		return nil, err
	}
	if !c.Args().Present() {
		return res.List(c.Context)
	}
	repos := make([]gitgate.Repo, 0, c.NArg())
	for _, name := range c.Args().Slice() {
		r, err := res.Resolve(name)
		if err != nil {
			return nil, fmt.Errorf("repository %q: %w", name, err)
		}
		repos = append(repos, r)
	}
	return repos, nil
}
