package main

import (
	"flag"
	"testing"

	"github.com/urfave/cli/v2"
)

func TestLFSOptions(t *testing.T) {
	parse := func(args ...string) (lfsOptions, error) {
		set := flag.NewFlagSet("serve", flag.ContinueOnError)
		for _, f := range lfsFlags() {
			if err := f.Apply(set); err != nil {
				t.Fatal(err)
			}
		}
		if err := set.Parse(args); err != nil {
			t.Fatal(err)
		}
		return lfsOptionsFrom(cli.NewContext(cli.NewApp(), set, nil))
	}
	o, err := parse("--external-url", "https://git.example.com/", "--lfs-max-object-size", "2GiB")
	if err != nil || o.externalURL != "https://git.example.com" || o.maxObjectSize != 2<<30 {
		t.Fatalf("good flags: %+v, %v", o, err)
	}
	if o, err := parse(); err != nil || o.externalURL != "" || o.maxObjectSize != 10<<30 {
		t.Fatalf("defaults: %+v, %v", o, err)
	}
	for _, bad := range [][]string{
		{"--external-url", "git.example.com"},
		{"--external-url", "ftp://git.example.com"},
		{"--external-url", "https://"},
		{"--external-url", "https://git.example.com/?x=1"},
		{"--lfs-max-object-size", "-1"},
		{"--lfs-max-object-size", "lots"},
	} {
		if _, err := parse(bad...); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}
