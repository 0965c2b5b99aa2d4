package gitgate

import (
	"errors"
	"strings"
	"testing"
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
