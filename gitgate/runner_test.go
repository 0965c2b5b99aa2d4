package gitgate

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseProtocol(t *testing.T) {
	for _, ok := range []string{"", "version=2", "version=1", "version=0", "version=2:object-format=sha1", "agent"} {
		if got, err := ParseProtocol(ok); err != nil || got != ok {
			t.Errorf("ParseProtocol(%q) = %q, %v", ok, got, err)
		}
	}
	for _, bad := range []string{"version=3", "version=", "=2", "version=2 ", "a\x00b", "a\nb", "::", "version=2:", strings.Repeat("a", 300)} {
		if _, err := ParseProtocol(bad); !errors.Is(err, ErrInvalidProtocol) {
			t.Errorf("ParseProtocol(%q) = %v; want ErrInvalidProtocol", bad, err)
		}
	}
}

func FuzzParseProtocol(f *testing.F) {
	for _, s := range []string{"version=2", "version=2:x=y", "a=b=c", "\x7f"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		got, err := ParseProtocol(v)
		if err != nil {
			return
		}
		for i := 0; i < len(got); i++ {
			if got[i] <= ' ' || got[i] >= 0x7f {
				t.Fatalf("ParseProtocol(%q) let byte %#x through", v, got[i])
			}
		}
	})
}

func TestBaseEnvDropsGitVariables(t *testing.T) {
	env := baseEnv([]string{"PATH=/bin", "GIT_DIR=/etc", "GIT_CONFIG_PARAMETERS='core.x=y'", "GITGATE_USER=mallory", "HOME=/h"})
	if got := strings.Join(env, " "); got != "PATH=/bin HOME=/h" {
		t.Fatalf("baseEnv = %s", got)
	}
}

// upload-pack runs with --strict: given a directory that is not itself a
// repository, it does not go on to serve the one a .git in it points to.
func TestRunnerUploadPackIsStrict(t *testing.T) {
	outside := t.TempDir()
	out, _ := NewResolver(outside)
	victim, err := out.Create(context.Background(), "victim")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := SeedReadme(victim, "# victim\n", "gitgate", time.Unix(0, 0)); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, ".git"), []byte("gitdir: "+victim.Path+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := NewRunner("git", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var stdout, stderr strings.Builder
	err = r.Run(context.Background(), Invocation{
		Op:   Operation{Service: UploadPack, Transport: TransportHTTP},
		Repo: Repo{Name: "x", Path: dir}, StatelessRPC: true, AdvertiseRefs: true,
		Stdout: &stdout, Stderr: &stderr,
	})
	if err == nil || strings.Contains(stdout.String(), "refs/heads/main") {
		t.Fatalf("upload-pack served the repository behind .git: err %v, stdout %q", err, stdout.String())
	}
}
