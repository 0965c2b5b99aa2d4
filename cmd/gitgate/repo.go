package main

import (
	"fmt"
	"os"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/gitgate/gitgate/geo"
	"github.com/gitgate/gitgate/gitgate"
	"github.com/gitgate/gitgate/hooks"
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
					&cli.BoolFlag{Name: "no-hook", Usage: "do not install the pre-receive hook into it"},
				},
				Action: func(c *cli.Context) error {
					if c.NArg() != 1 {
						return usageError{fmt.Errorf("repo create takes one repository name, got %d arguments", c.NArg())}
					}
					if dir, err := dataDir(c); err == nil {
						if err := refuseOnGeoSecondary(dir, "no repository is created", geo.ChangeReposOnPrimary); err != nil {
							return err
						}
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
					if !c.Bool("no-hook") {
						if err := installHook(c, repo); err != nil {
							return err
						}
					}
					if dir, err := dataDir(c); err == nil {
						_ = gitgate.RecordChange(dir, repo.Path) // a Geo primary tells its secondaries at once
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

// installHook puts the pre-receive hook into a new repository, pointing at
// this binary and the data dir.
func installHook(c *cli.Context, repo gitgate.Repo) error {
	dir, err := dataDir(c)
	if err != nil {
		return err
	}
	bin, err := selfBinary()
	if err != nil {
		return fmt.Errorf("pre-receive hook: find the gitgate binary: %w", err)
	}
	in, err := hooks.NewInstaller(hooks.Script{Binary: bin, DataDir: dir})
	if err != nil {
		return fmt.Errorf("pre-receive hook: %w", err)
	}
	if _, err := in.Install(repo.Path); err != nil {
		return fmt.Errorf("pre-receive hook for %s: %w", repo.Name, err)
	}
	return nil
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
