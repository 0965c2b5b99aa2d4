package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/gitgate/gitgate/sshd"
)

// sshHostKeyFlag names additional SSH host key files. serve takes the same
// flag, so that "ssh host-keys" prints what the server presents.
func sshHostKeyFlag() *cli.StringSliceFlag {
	return &cli.StringSliceFlag{
		Name:    "ssh-host-key",
		Usage:   "additional SSH host key `FILE` (OpenSSH private key, mode 0600); repeatable",
		EnvVars: []string{"GITGATE_SSH_HOST_KEYS"},
	}
}

// sshCommand is "gitgate ssh": tools for the SSH front end.
func sshCommand() *cli.Command {
	return &cli.Command{
		Name:  "ssh",
		Usage: "SSH front end tools",
		Subcommands: []*cli.Command{
			{
				Name:  "host-keys",
				Usage: "print the fingerprints of the SSH host keys, generating the missing ones in the data dir",
				Description: "Prints one line per host key the server presents, as \"ssh-keygen -l\" does:\n" +
					"size, SHA256 fingerprint and type. Users compare them with what ssh shows\n" +
					"on their first connection.",
				Flags: []cli.Flag{sshHostKeyFlag()},
				Action: func(c *cli.Context) error {
					dir, err := dataDir(c)
					if err != nil {
						return err
					}
					signers, err := sshd.LoadOrCreateHostKeys(dir, c.StringSlice("ssh-host-key"))
					if err != nil {
						return err
					}
					for _, fp := range sshd.Fingerprints(signers) {
						fmt.Fprintln(c.App.Writer, fp)
					}
					return nil
				},
			},
		},
	}
}
