package main

// Temporary: each of these moves to its own file as its issue lands.

import "github.com/urfave/cli/v2"

func userCommand() *cli.Command  { return &cli.Command{Name: "user", Hidden: true} }
func tokenCommand() *cli.Command { return &cli.Command{Name: "token", Hidden: true} }
func accessCommand() *cli.Command {
	return &cli.Command{Name: "access", Hidden: true}
}
