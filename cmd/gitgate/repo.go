package main

import (
	"fmt"
	"os"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/gitgate/gitgate/gitgate"
)

// exampleReadme is the README of a repository made with --readme.
const exampleReadme = "# %s\n\nThis repository is served by gitgate.\n"

func repoCommand() *cli.Command {
	return &cli.Command{
		Name:  "repo",
		Usage: "create and list bare repositories",
		Flags: []cli.Flag{reposFlag()},
		Subcommands: []*cli.Command{
			{
				Name:      "create",
				Usage:     "create a bare repository (groups are created as needed)",
				ArgsUsage: "NAME (e.g. group/name)",
				Flags: []cli.Flag{
					&cli.BoolFlag{Name: "readme", Usage: "give it a first commit with a README.md"},
					&cli.BoolFlag{Name: "if-missing", Usage: "succeed without change if it already exists"},
				},
				Action: func(c *cli.Context) error {
					if c.NArg() != 1 {
						return usageError{fmt.Errorf("repo create takes one repository name, got %d arguments", c.NArg())}
					}
					resolver, err := openRepos(c, true)
					if err != nil {
						return err
					}
					name := c.Args().First()
					if c.Bool("if-missing") {
						if repo, err := resolver.Resolve(name); err == nil {
							fmt.Fprintf(c.App.Writer, "%s exists at %s\n", repo.Name, repo.Path)
							return nil
						}
					}
					repo, err := resolver.Create(c.Context, name)
					if err != nil {
						return err
					}
					if c.Bool("readme") {
						if _, err := gitgate.SeedReadme(repo, fmt.Sprintf(exampleReadme, repo.Name), "gitgate", time.Now()); err != nil {
							return err
						}
					}
					fmt.Fprintf(c.App.Writer, "created %s at %s\n", repo.Name, repo.Path)
					return nil
				},
			},
			{
				Name:  "list",
				Usage: "list the repositories, one name a line",
				Action: func(c *cli.Context) error {
					resolver, err := openRepos(c, false)
					if err != nil {
						return err
					}
					repos, err := resolver.List(c.Context)
					if err != nil {
						return err
					}
					for _, r := range repos {
						fmt.Fprintln(c.App.Writer, r.Name)
					}
					return nil
				},
			},
		},
	}
}

// openRepos returns the resolver for --repos, creating the root if asked.
func openRepos(c *cli.Context, create bool) (*gitgate.Resolver, error) {
	dir, err := dataDir(c)
	if err != nil {
		return nil, err
	}
	root := reposDir(c, dir)
	if create {
		if err := os.MkdirAll(root, 0o750); err != nil {
			return nil, fmt.Errorf("create %s: %w", root, err)
		}
	}
	return gitgate.NewResolver(root)
}
