package sitetest

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/gitgate/gitgate/geo"
	"github.com/gitgate/gitgate/internal/pgtest"
	"github.com/gitgate/gitgate/pgstore"
)

// geoPrimaryDir makes a primary's data dir whose geo.yaml names secondary
// eu with secret.
func geoPrimaryDir(t *testing.T, secret string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "secrets"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "secrets", "eu.key"), []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "geo.yaml"), []byte("secondaries:\n  - name: eu\n    secret_file: secrets/eu.key\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// The gates of a Geo primary site on a database share its registry of
// secondaries: the first gate registers the fingerprint of each
// secondary's secret (the secret itself never reaches the database), and
// a gate whose secret file differs refuses to start, saying so. (Before,
// each gate kept geo.yaml to itself and nothing noticed.)
func TestSiteGeoRegistry(t *testing.T) {
	t.Parallel()
	db := pgtest.Database(t, cluster)
	mustCLI(t, db, t.TempDir(), "db", "migrate")
	repos := t.TempDir()
	secret := strings.Repeat("5ec7e7", 11)
	startGateIn(t, geoPrimaryDir(t, secret), "A", db, repos, "--geo-role", "primary", "--geo-confirm-primary")

	conn, err := pgx.Connect(t.Context(), db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var name, fp, row string
	if err := conn.QueryRow(t.Context(), `SELECT name, secret_fingerprint, geo_nodes::text FROM geo_nodes`).Scan(&name, &fp, &row); err != nil {
		t.Fatalf("the registry after gate A's start: %v", err)
	}
	if name != "eu" || fp != pgstore.SecretFingerprint([]byte(secret)) || strings.Contains(row, secret) {
		t.Fatalf("registry row %q", row)
	}

	// Gate B of the same site with another secret for eu.
	_, errs, code := cli(t, db, geoPrimaryDir(t, strings.Repeat("0ther5", 11)), "serve", "--repos", repos,
		"--http-listen", "127.0.0.1:0", "--ssh-listen", "", "--geo-role", "primary", "--geo-confirm-primary")
	if code == 0 || !strings.Contains(errs, "secondary eu: this gate's secret file is not the one the site's other gates registered") {
		t.Fatalf("gate B with another secret: exit %d\n%s", code, errs)
	}
	// With the site's secret it starts.
	b := startGateIn(t, geoPrimaryDir(t, secret), "B", db, repos, "--geo-role", "primary", "--geo-confirm-primary")

	// Secondary eu polls gate B (as a load balancer may send it there):
	// the contact is in the site's registry, recorded by B.
	auth, err := geo.Sign([]byte(secret), "eu", geo.Claims{Scope: geo.ScopeStatus}, 0)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequestWithContext(t.Context(), "GET", b.http+geo.StatusPath, nil)
	req.Header.Set("Authorization", auth)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status poll of gate B: %s", resp.Status)
	}
	bounded(t, "the contact to reach the registry", func() bool {
		var gate string
		err := conn.QueryRow(t.Context(), `SELECT contact_gate FROM geo_nodes WHERE name = 'eu' AND last_contact IS NOT NULL`).Scan(&gate)
		return err == nil && gate == "B"
	})
	// Any host lists the site's registry.
	out := mustCLI(t, db, t.TempDir(), "db", "geo-nodes")
	if !regexp.MustCompile(`(?m)^eu +\d{4}-\d\d-\d\dT\S+Z +B +\d+ +sha256:`).MatchString(out) || strings.Contains(out, secret) {
		t.Errorf("db geo-nodes:\n%s", out)
	}
	t.Logf("db geo-nodes:\n%s", out)
}
