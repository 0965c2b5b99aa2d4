package main

import (
	"context"
	"os"
	"runtime"

	"github.com/urfave/cli/v2"

	"github.com/gitgate/gitgate/packcache"
)

// packObjectsHookName is the hook subcommand git runs, through
// uploadpack.packObjectsHook, instead of pack-objects.
const packObjectsHookName = "pack-objects"

// isPackObjectsHook reports whether args (os.Args) run the pack-objects
// hook. It runs before the command tree is built: git runs it on every
// fetch, with pack-objects' own options, which are not gitgate's flags.
func isPackObjectsHook(args []string) bool {
	return len(args) >= 3 && args[1] == "hook" && args[2] == packObjectsHookName
}

// runPackObjectsHook runs the hook with git's arguments ("git pack-objects
// ...") and returns the exit status.
func runPackObjectsHook(ctx context.Context, args []string) int {
	// Never outlive upload-pack: its death ends the request.
	dieWithParent()
	// One stream to copy: more threads only spin.
	runtime.GOMAXPROCS(1)
	socket, secret := packcache.HookEnv()
	return packcache.RunHook(ctx, socket, secret, args, os.Stdin, os.Stdout, os.Stderr)
}

// packObjectsHookCommand documents the hook in "gitgate hook --help";
// gitgateMain runs it before the command line is parsed.
func packObjectsHookCommand() *cli.Command {
	return &cli.Command{
		Name:            packObjectsHookName,
		Usage:           "serve a fetch's pack from the gate's pack-objects cache (git runs it)",
		ArgsUsage:       "git pack-objects [options]",
		Hidden:          true,
		SkipFlagParsing: true,
		Description: "The gate sets uploadpack.packObjectsHook for the git upload-pack processes it\n" +
			"starts, so git runs this instead of pack-objects. It passes its arguments and\n" +
			"stdin to the gate over the socket named in " + packcache.EnvSocket + ", which\n" +
			"generates the pack once for identical requests and streams it. Without that\n" +
			"variable it runs git pack-objects itself.",
		Action: func(c *cli.Context) error {
			return exitStatus(packcache.RunHook(c.Context, "", "", c.Args().Slice(), c.App.Reader, c.App.Writer, c.App.ErrWriter))
		},
	}
}
