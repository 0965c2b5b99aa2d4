package main

import (
	"strings"

	"github.com/urfave/cli/v2"
)

// interspersed lets flags follow positional arguments, as in
// "gitgate token create alice --name ci". urfave/cli v2 stops reading flags
// at the first argument, so this moves each command's flags ahead of its
// arguments before parsing. It follows the command tree to know which flags
// take a value; "--" ends flags, and everything after it stays in place.
func interspersed(app *cli.App, args []string) []string {
	if len(args) == 0 {
		return args
	}
	out := []string{args[0]}
	flags, cmds := app.Flags, app.Commands
	var pending []string // positional arguments of the current command
	rest := args[1:]
	for i := 0; i < len(rest); i++ {
		a := rest[i]
		switch {
		case a == "--":
			out = append(out, pending...)
			return append(out, rest[i:]...)
		case len(a) > 1 && a[0] == '-':
			out = append(out, a)
			if takesValue(flags, a) && i+1 < len(rest) {
				i++
				out = append(out, rest[i])
			}
		case len(pending) == 0 && findCommand(cmds, a) != nil:
			cmd := findCommand(cmds, a)
			out = append(out, a)
			flags, cmds = cmd.Flags, cmd.Subcommands
		default:
			pending = append(pending, a)
		}
	}
	return append(out, pending...)
}

func findCommand(cmds []*cli.Command, name string) *cli.Command {
	for _, c := range cmds {
		if c.HasName(name) {
			return c
		}
	}
	return nil
}

// takesValue reports whether arg ("--name" or "-n") names a flag that takes
// its value from the next argument.
func takesValue(flags []cli.Flag, arg string) bool {
	name := strings.TrimLeft(arg, "-")
	if strings.Contains(name, "=") {
		return false
	}
	for _, f := range flags {
		for _, n := range f.Names() {
			if n != name {
				continue
			}
			if bf, ok := f.(*cli.BoolFlag); ok && bf != nil {
				return false
			}
			return true
		}
	}
	return false
}
