// Command gitgate terminates Git traffic over SSH and smart HTTP in front of a
// directory of bare repositories and enforces GitLab-style read-only
// maintenance mode. Run "gitgate --help" for the list of commands.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/urfave/cli/v2"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() { os.Exit(gitgateMain()) }

// gitgateMain runs the command line and returns the exit status.
func gitgateMain() int {
	// SIGINT and SIGTERM end ctx, which every command waits on.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// A binary installed as a repository's hooks/pre-receive runs as the hook.
	if filepath.Base(os.Args[0]) == "pre-receive" {
		return runPreReceiveHook(ctx, os.Args[1:])
	}
	if isPackObjectsHook(os.Args) {
		return runPackObjectsHook(ctx, os.Args[3:])
	}
	return exitCode(os.Stderr, interrupted(ctx, run(ctx, os.Stdout, os.Stderr, os.Args)))
}

// interrupted says so when a command failed after SIGINT or SIGTERM ended
// its context: every wait in a command ends with its context, so a signal
// makes it return, and this says why.
func interrupted(ctx context.Context, err error) error {
	if err == nil || ctx.Err() == nil {
		return err
	}
	var usage usageError
	var coder cli.ExitCoder
	if errors.As(err, &usage) || errors.As(err, &coder) {
		return err
	}
	return fmt.Errorf("interrupted by a signal: %w", err)
}

// run runs the command line args (args[0] is the program name).
func run(ctx context.Context, stdout, stderr io.Writer, args []string) error {
	app := newApp(stdout, stderr)
	return app.RunContext(ctx, interspersed(app, args))
}

// exitCode prints err as one line and maps it to the process exit status:
// 0 for success, 2 for usage errors, the code of a cli.ExitCoder, else 1.
func exitCode(stderr io.Writer, err error) int {
	if err == nil {
		return 0
	}
	var usage usageError
	var coder cli.ExitCoder
	switch {
	case errors.As(err, &usage):
		fmt.Fprintf(stderr, "gitgate: %v\n", usage.err)
		return 2
	case errors.As(err, &coder):
		if msg := err.Error(); msg != "" {
			fmt.Fprintf(stderr, "gitgate: %s\n", msg)
		}
		return coder.ExitCode()
	}
	fmt.Fprintf(stderr, "gitgate: %v\n", err)
	return 1
}

// usageError marks a bad command line (exit status 2).
type usageError struct{ err error }

func (u usageError) Error() string { return u.err.Error() }

func onUsageError(_ *cli.Context, err error, _ bool) error { return usageError{err} }

// newApp builds the command tree. Every command is defined in the file named
// after it; the work is done by the packages they call.
func newApp(stdout, stderr io.Writer) *cli.App {
	app := &cli.App{
		Name:  "gitgate",
		Usage: "Git over SSH and smart HTTP with GitLab-style read-only maintenance mode",
		Description: "gitgate serves a directory of bare Git repositories over SSH and smart HTTP,\n" +
			"running the real git binary, and refuses pushes while the instance is in\n" +
			"read-only maintenance mode, with GitLab's exact message.",
		Version:              version,
		Writer:               stdout,
		ErrWriter:            stderr,
		EnableBashCompletion: true,
		HideHelpCommand:      true,
		OnUsageError:         onUsageError,
		// Errors, exit codes included, come back to exitCode: urfave/cli
		// would otherwise print them and call os.Exit itself.
		ExitErrHandler: func(*cli.Context, error) {},
		Flags:          globalFlags(),
		Action:         unknownCommand,
		Commands: []*cli.Command{
			serveCommand(),
			maintenanceCommand(),
			repoCommand(),
			hookCommand(),
			hooksCommand(),
			userCommand(),
			tokenCommand(),
			accessCommand(),
			sshCommand(),
			geoCommand(),
			dbCommand(),
		},
	}
	setUsageErrorHandler(app.Commands)
	return app
}

// setUsageErrorHandler makes bad flags and unknown subcommands exit with
// status 2 and one line, on every command.
func setUsageErrorHandler(cmds []*cli.Command) {
	for _, c := range cmds {
		if c.OnUsageError == nil {
			c.OnUsageError = onUsageError
		}
		if c.Action == nil && len(c.Subcommands) > 0 {
			c.Action = unknownCommand
		}
		setUsageErrorHandler(c.Subcommands)
	}
}

// unknownCommand is the action of a command that only groups subcommands:
// without arguments it shows help, otherwise the argument is no command.
func unknownCommand(c *cli.Context) error {
	if c.NArg() == 0 {
		return cli.ShowSubcommandHelp(c)
	}
	return usageError{fmt.Errorf("unknown command %q; see '%s --help'", c.Args().First(), c.Command.HelpName)}
}

func globalFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{
			Name:    "data-dir",
			Usage:   "directory holding the gate's state, keys, access file and (by default) repositories",
			Value:   "./data",
			EnvVars: []string{"GITGATE_DATA_DIR"},
		},
		&cli.StringFlag{
			Name:    "log-level",
			Usage:   "log level: debug, info, warn or error",
			Value:   "info",
			EnvVars: []string{"GITGATE_LOG_LEVEL"},
		},
		&cli.StringFlag{
			Name:    "log-format",
			Usage:   "log format: text or json",
			Value:   "text",
			EnvVars: []string{"GITGATE_LOG_FORMAT"},
		},
		databaseURLFlag(),
	}
}

// newLogger builds the process logger from the global flags. Logs go to stderr.
func newLogger(c *cli.Context) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.String("log-level"))); err != nil {
		return nil, usageError{fmt.Errorf("invalid --log-level %q: want debug, info, warn or error", c.String("log-level"))}
	}
	opts := &slog.HandlerOptions{Level: level}
	w := c.App.ErrWriter
	switch c.String("log-format") {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, usageError{fmt.Errorf("invalid --log-format %q: want text or json", c.String("log-format"))}
}

// dataDir returns the absolute data directory from the global flag.
func dataDir(c *cli.Context) (string, error) {
	dir, err := filepath.Abs(c.String("data-dir"))
	if err != nil {
		return "", fmt.Errorf("data dir: %w", err)
	}
	return dir, nil
}
