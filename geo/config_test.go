package geo_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gitgate/gitgate/geo"
)

// writeSecret writes a secret file with mode perm and returns its path.
func writeSecret(t testing.TB, dir, name, secret string, perm os.FileMode) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(secret), perm); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, perm); err != nil { // whatever the umask
		t.Fatal(err)
	}
	return path
}

const testSecret = "0123456789abcdef0123456789abcdef-test-secret"

func TestReadSecret(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name, content string
		perm          os.FileMode
		want          string // substring of the error; "" for success
	}{
		{"ok", testSecret + "\n", 0o600, ""},
		{"owner read-only", testSecret, 0o400, ""},
		{"world-readable", testSecret, 0o644, "has mode 0644: group and others must have no access (chmod 600 "},
		{"group-readable", testSecret, 0o640, "has mode 0640"},
		{"world-writable", testSecret, 0o602, "has mode 0602"},
		{"too short", "short-secret\n", 0o600, "holds 12 bytes, at least 32 needed"},
		{"white space only", strings.Repeat(" \n", 40), 0o600, "holds 0 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeSecret(t, dir, strings.ReplaceAll(tt.name, " ", "-"), tt.content, tt.perm)
			secret, err := geo.ReadSecret(path)
			if tt.want == "" {
				if err != nil || string(secret) != testSecret {
					t.Fatalf("ReadSecret = %q, %v", secret, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), path) {
				t.Fatalf("ReadSecret error %v, want one naming %s and saying %q", err, path, tt.want)
			}
		})
	}
	if _, err := geo.ReadSecret(dir); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("directory: %v", err)
	}
	if _, err := geo.ReadSecret(filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

func TestParseConfig(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "geo.yaml")
	tests := []struct {
		name, yaml string
		want       []string // error lines; none for success
	}{
		{"ok", "secondaries:\n  - name: eu-west\n    secret_file: secrets/eu.key\n  - name: asia\n    secret_file: /abs/asia.key\n", nil},
		{"empty file", "", nil},
		{"unknown top-level field", "secondaries: []\nprimary: x\n", []string{path + ":2: unknown field \"primary\""}},
		{"unknown field in a secondary", "secondaries:\n  - name: eu\n    secret: x\n", []string{path + ":3: unknown field \"secret\" in a secondary"}},
		{"wrong type", "secondaries:\n  name: eu\n", []string{path + ":2: cannot unmarshal !!map into a list of secondaries"}},
		{"secondary not a mapping", "secondaries:\n  - eu\n", []string{path + ":2: a secondary is a mapping"}},
		{"missing name and secret", "secondaries:\n  - name: eu\n    secret_file: a\n  - {}\n",
			[]string{path + ":4: secondary without a name", path + ":4: secondary \"\": secret_file is required"}},
		{"repeated name", "secondaries:\n  - name: eu\n    secret_file: a\n  - name: eu\n    secret_file: b\n",
			[]string{path + ":4: secondary \"eu\" is also listed on line 2"}},
		{"bad name", "secondaries:\n  - name: \"e u\"\n    secret_file: a\n", []string{path + ":2: invalid Geo node name \"e u\""}},
		{"syntax error", "secondaries:\n  - name: eu\n    secret_file: a: b\n", []string{path + ":3: mapping values are not allowed in this context"}},
		{"two documents", "secondaries: []\n---\nsecondaries: []\n", []string{path + ": more than one YAML document"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := geo.ParseConfig(path, []byte(tt.yaml))
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				if tt.name == "ok" && (len(c.Secondaries) != 2 || c.Secondaries[0].SecretFile != filepath.Join(dir, "secrets/eu.key") ||
					c.Secondaries[1].SecretFile != "/abs/asia.key") {
					t.Errorf("config %+v", c.Secondaries)
				}
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != len(tt.want) {
				t.Fatalf("error %q, want %d lines like %q", err, len(tt.want), tt.want)
			}
			for i, want := range tt.want {
				if !strings.HasPrefix(lines[i], want) {
					t.Errorf("error line %q, want prefix %q", lines[i], want)
				}
			}
		})
	}
}

func TestLoadConfigAndSecrets(t *testing.T) {
	dir := t.TempDir()
	if _, err := geo.LoadConfig(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing geo.yaml: %v", err)
	}
	if err := os.Mkdir(filepath.Join(dir, "secrets"), 0o700); err != nil {
		t.Fatal(err)
	}
	writeSecret(t, dir, "secrets/eu.key", testSecret+"-eu\n", 0o600)
	open := writeSecret(t, dir, "secrets/asia.key", testSecret+"-asia\n", 0o644)
	yaml := "secondaries:\n  - name: eu\n    secret_file: secrets/eu.key\n  - name: asia\n    secret_file: secrets/asia.key\n"
	if err := os.WriteFile(filepath.Join(dir, geo.ConfigFileName), []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := geo.LoadConfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Secrets()
	want := filepath.Join(dir, "geo.yaml") + ":4: secondary \"asia\": geo secret file " + open + " has mode 0644"
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("Secrets error %v, want %q...", err, want)
	}
	if err := os.Chmod(open, 0o600); err != nil {
		t.Fatal(err)
	}
	secrets, err := c.Secrets()
	if err != nil {
		t.Fatal(err)
	}
	if string(secrets["eu"]) != testSecret+"-eu" || string(secrets["asia"]) != testSecret+"-asia" {
		t.Errorf("secrets %q", secrets)
	}
	if got := geo.NewVerifier(secrets).Nodes(); strings.Join(got, ",") != "asia,eu" {
		t.Errorf("Nodes = %v", got)
	}
}

func TestSecondaryOptionsValidate(t *testing.T) {
	ok := geo.SecondaryOptions{PrimaryURL: "https://primary.example.com/", NodeName: "eu-west", SecretFile: "/s"}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, change := range map[string]func(*geo.SecondaryOptions){
		"no URL":           func(o *geo.SecondaryOptions) { o.PrimaryURL = "" },
		"ssh URL":          func(o *geo.SecondaryOptions) { o.PrimaryURL = "ssh://primary" },
		"no host":          func(o *geo.SecondaryOptions) { o.PrimaryURL = "http:///x" },
		"credentials":      func(o *geo.SecondaryOptions) { o.PrimaryURL = "https://u:p@primary" },
		"query":            func(o *geo.SecondaryOptions) { o.PrimaryURL = "https://primary/?a=b" },
		"bad node name":    func(o *geo.SecondaryOptions) { o.NodeName = "eu:west" },
		"no secret file":   func(o *geo.SecondaryOptions) { o.SecretFile = "" },
		"backoff reversed": func(o *geo.SecondaryOptions) { o.MinBackoff, o.MaxBackoff = 2, 1 },
		"poll wait":        func(o *geo.SecondaryOptions) { o.PollWait = geo.MaxPollWait + 1 },
	} {
		o := ok
		change(&o)
		if err := o.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestSecondaryMarker(t *testing.T) {
	dir := t.TempDir()
	if _, ok, err := geo.ReadSecondaryMarker(dir); ok || err != nil {
		t.Fatalf("no marker: %v %v", ok, err)
	}
	if err := geo.WriteSecondaryMarker(dir, "https://primary.example.com", "eu"); err != nil {
		t.Fatal(err)
	}
	m, ok, err := geo.ReadSecondaryMarker(dir)
	if !ok || err != nil || m.PrimaryURL != "https://primary.example.com" || m.Node != "eu" || m.Since.IsZero() {
		t.Fatalf("marker %+v %v %v", m, ok, err)
	}
	want := "This is a Geo secondary site: maintenance mode follows the primary site. Change it on the primary (https://primary.example.com)."
	if got := geo.ChangeOnPrimary(m.PrimaryURL); got != want {
		t.Errorf("ChangeOnPrimary = %q", got)
	}
	if err := os.WriteFile(filepath.Join(dir, geo.MarkerFileName), []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := geo.ReadSecondaryMarker(dir); err == nil {
		t.Error("corrupt marker read without error")
	}
	for range 2 {
		if err := geo.RemoveSecondaryMarker(dir); err != nil {
			t.Fatal(err)
		}
	}
	if _, ok, _ := geo.ReadSecondaryMarker(dir); ok {
		t.Error("marker still there")
	}
}
