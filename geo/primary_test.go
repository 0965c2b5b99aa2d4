package geo_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/gitgate/gitgate/geo"
)

func decodeStatus(t testing.TB, body string) geo.StatusResponse {
	t.Helper()
	var r geo.StatusResponse
	dec := json.NewDecoder(strings.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		t.Fatalf("status body %q: %v", body, err)
	}
	return r
}

func TestStatusLongPoll(t *testing.T) {
	p := startPrimaryAPI(t)
	auth := statusToken(t, secretEU, "eu")
	poll := func(query string) (int, string) { return get(t, p.url+geo.StatusPath+query, auth) }

	// Without after: the state at once, even "never written" (version 0).
	code, body := poll("?wait=2m")
	if r := decodeStatus(t, body); code != 200 || r.State.Version != 0 || r.State.Enabled || r.Reset {
		t.Fatalf("first poll: %d %s", code, body)
	}

	// Behind: answered at once with the current state.
	on := p.set(t, true)
	code, body = poll("?after=0&wait=2m")
	if r := decodeStatus(t, body); code != 200 || r.State != on {
		t.Fatalf("poll behind: %d %s, want %+v", code, body, on)
	}
	if n := p.node(t, "eu"); n.VersionSeen != 0 || n.Lag != 1 || !n.Connected {
		t.Errorf("node after a poll from version 0: %+v", n)
	}

	// Up to date: the poll waits for the next change, then answers with it.
	type result struct {
		code int
		body string
	}
	answered := make(chan result, 1)
	go func() {
		code, body := poll("?after=1&wait=2m")
		answered <- result{code, body}
	}()
	mustWaitFor(t, "the poll to reach the primary", func() bool { return p.node(t, "eu").VersionSeen == 1 })
	select {
	case r := <-answered:
		t.Fatalf("up-to-date poll answered before any change: %d %s", r.code, r.body)
	default:
	}
	if n := p.node(t, "eu"); !n.Connected || n.Lag != 0 {
		t.Errorf("node while polling: %+v", n)
	}
	off := p.set(t, false)
	select {
	case r := <-answered:
		if s := decodeStatus(t, r.body); r.code != 200 || s.State != off {
			t.Fatalf("after the change: %d %s, want %+v", r.code, r.body, off)
		}
	case <-time.After(testDeadline):
		t.Fatal("the waiting poll was not answered after the change")
	}

	// Nothing changes within wait: the unchanged state.
	code, body = poll("?after=2&wait=20ms")
	if r := decodeStatus(t, body); code != 200 || r.State != off || r.Reset {
		t.Fatalf("poll timing out: %d %s", code, body)
	}
	if code, body = poll("?after=2&wait=1"); code != 200 || decodeStatus(t, body).State != off {
		t.Fatalf("wait in seconds: %d %s", code, body)
	}

	// The secondary is ahead: the primary's state was reset.
	code, body = poll("?after=7&wait=2m")
	if r := decodeStatus(t, body); code != 200 || r.State != off || !r.Reset {
		t.Fatalf("poll ahead: %d %s", code, body)
	}

	for _, q := range []string{"?after=x", "?after=-1", "?after=1&wait=soon", "?wait=-1s"} {
		if code, body := poll(q); code != 400 || !strings.Contains(body, `"message":"400 Bad request - `) {
			t.Errorf("%s: %d %s", q, code, body)
		}
	}
}

func TestStatusRefusesBadTokens(t *testing.T) {
	p := startPrimaryAPI(t)
	now := time.Now()
	claims := func(iat, exp time.Time, scope string) jwt.MapClaims {
		return jwt.MapClaims{"node": "eu", "scope": scope, "iat": iat.Unix(), "exp": exp.Unix(), "jti": "1"}
	}
	raw := func(secret []byte, c jwt.MapClaims) string {
		s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(secret)
		if err != nil {
			t.Fatal(err)
		}
		return "GL-Geo eu:" + s
	}
	push, err := geo.Sign(secretEU, "eu", geo.Claims{Scope: geo.ScopePush, Repo: "group/project"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ name, auth, reason string }{
		{"none", "", "no GL-Geo authorization"},
		{"private token", "Bearer ggt_abc", "no GL-Geo authorization"},
		{"forged", raw([]byte("not the secret, but long enough to look like one"), claims(now, now.Add(time.Minute), "status")), "bad token signature"},
		{"other node's secret", raw(secretAsia, claims(now, now.Add(time.Minute), "status")), "bad token signature"},
		{"expired", raw(secretEU, claims(now.Add(-3*time.Minute), now.Add(-2*time.Minute), "status")), "token expired or not yet valid (are the sites' clocks in sync?)"},
		{"wrong scope", push, "token scope does not allow this request"},
		{"unknown node", statusToken(t, secretEU, "us"), "unknown Geo node"},
		{"malformed", "GL-Geo eu:x.y", "malformed GL-Geo authorization"},
	} {
		code, body := get(t, p.url+geo.StatusPath, tt.auth)
		want := `{"message":"401 Unauthorized: ` + tt.reason + `"}` + "\n"
		if code != http.StatusUnauthorized || body != want {
			t.Errorf("%s: %d %q, want 401 %q", tt.name, code, body, want)
		}
	}
	if n := p.node(t, "eu"); !n.LastContact.IsZero() {
		t.Errorf("refused requests counted as contact: %+v", n)
	}
}

func TestStatusUnreadableStateIs503(t *testing.T) {
	p := startPrimaryAPI(t)
	auth := statusToken(t, secretEU, "eu")
	p.set(t, true)

	// A poll waiting when the state becomes unreadable is answered 503 too.
	answered := make(chan int, 1)
	go func() {
		code, _ := get(t, p.url+geo.StatusPath+"?after=1&wait=2m", auth)
		answered <- code
	}()
	mustWaitFor(t, "the poll to reach the primary", func() bool { return p.node(t, "eu").VersionSeen == 1 })
	p.corrupt(t)
	select {
	case code := <-answered:
		if code != http.StatusServiceUnavailable {
			t.Fatalf("waiting poll: %d, want 503", code)
		}
	case <-time.After(testDeadline):
		t.Fatal("waiting poll not answered when the state became unreadable")
	}

	code, body := get(t, p.url+geo.StatusPath+"?after=0", auth)
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "cannot read its maintenance state") {
		t.Fatalf("poll on an unreadable state: %d %s", code, body)
	}
}

func TestShutdownEndsLongPolls(t *testing.T) {
	p := startPrimaryAPI(t)
	auth := statusToken(t, secretEU, "eu")
	answered := make(chan int, 1)
	go func() {
		code, _ := get(t, p.url+geo.StatusPath+"?after=0&wait=2m", auth)
		answered <- code
	}()
	mustWaitFor(t, "the poll to reach the primary", func() bool { return !p.node(t, "eu").LastContact.IsZero() })
	p.primary.Shutdown()
	select {
	case code := <-answered:
		if code != http.StatusServiceUnavailable {
			t.Fatalf("open poll at shutdown: %d, want 503", code)
		}
	case <-time.After(testDeadline):
		t.Fatal("open poll not answered at shutdown")
	}
	p.primary.Shutdown()
	if code, body := get(t, p.url+geo.StatusPath, auth); code != http.StatusServiceUnavailable || !strings.Contains(body, "shutting down") {
		t.Fatalf("poll after shutdown: %d %s", code, body)
	}
}

func TestNodes(t *testing.T) {
	p := startPrimaryAPI(t)
	p.set(t, true)
	p.set(t, false)
	get(t, p.url+geo.StatusPath+"?after=1&wait=0s", statusToken(t, secretEU, "eu"))
	code, body := get(t, p.url+geo.NodesPath, "")
	var nodes []geo.NodeStatus
	if err := json.Unmarshal([]byte(body), &nodes); err != nil || code != 200 {
		t.Fatalf("nodes: %d %s %v", code, body, err)
	}
	if len(nodes) != 2 || nodes[0].Name != "asia" || nodes[1].Name != "eu" {
		t.Fatalf("nodes %+v", nodes)
	}
	if a := nodes[0]; a.Connected || !a.LastContact.IsZero() || a.Lag != 2 || a.PrimaryVersion != 2 {
		t.Errorf("never-seen node: %+v", a)
	}
	if e := nodes[1]; e.LastContact.IsZero() || e.VersionSeen != 1 || e.Lag != 1 || e.PrimaryVersion != 2 {
		t.Errorf("node eu: %+v", e)
	}
	for _, key := range []string{`"name":"eu"`, `"connected":`, `"last_contact":"`, `"version_seen":1`, `"primary_version":2`, `"lag":1`} {
		if !strings.Contains(body, key) {
			t.Errorf("nodes JSON lacks %s: %s", key, body)
		}
	}

	// The status file, for "gitgate geo status".
	st, ok, err := geo.ReadPrimaryStatus(p.dataDir, time.Now())
	if ok || err != nil {
		t.Fatalf("status file before any was written: %v %v", ok, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.primary.WriteStatusFile(ctx, p.dataDir)
	}()
	mustWaitFor(t, "the status file", func() bool {
		st, ok, err = geo.ReadPrimaryStatus(p.dataDir, time.Now())
		return ok && err == nil
	})
	cancel()
	<-done
	if !st.Running || st.Version != 2 || len(st.Nodes) != 2 || st.Nodes[1].VersionSeen != 1 {
		t.Errorf("status file %+v", st)
	}
	if st, _, _ := geo.ReadPrimaryStatus(p.dataDir, time.Now().Add(time.Hour)); st.Running || st.Nodes[1].Connected {
		t.Errorf("an old status file reads as running: %+v", st)
	}
}

// On a site of several gates, a gate's Nodes shows the newest contact any
// gate heard (the shared registry), saying which gate heard it, with the
// lag against this gate's state and the newest replication report; a
// contact older than this gate's own changes nothing. (Before, each gate
// showed only what it heard itself.)
func TestNodesMergeTheSiteRegistry(t *testing.T) {
	p := startPrimaryAPI(t)
	p.set(t, true)
	p.set(t, true)
	p.set(t, true) // version 3
	p.primary.ShareSite("B", 10*time.Second)
	// This gate (B) heard eu at version 1; gate A heard asia, and eu
	// later, at version 2, with a report.
	get(t, p.url+geo.StatusPath+"?after=1&wait=0s", statusToken(t, secretEU, "eu"))
	mine := p.node(t, "eu")
	if mine.Gate != "B" {
		t.Fatalf("this gate's own contact: %+v", mine)
	}
	later := mine.LastContact.Add(time.Second)
	rep := &geo.ReplicationStatus{Synced: 4, Pending: 1, Reported: later}
	p.primary.SetSiteContacts([]geo.SiteContact{
		{Name: "eu", LastContact: later, Gate: "A", VersionSeen: 2, Replication: rep},
		{Name: "asia", LastContact: time.Now().Add(-time.Hour), Gate: "A", VersionSeen: 1},
		{Name: "gone", LastContact: later, Gate: "A"}, // not in this gate's geo.yaml: not listed
	})
	nodes := p.primary.Nodes()
	if len(nodes) != 2 {
		t.Fatalf("nodes %+v", nodes)
	}
	asia, eu := nodes[0], nodes[1]
	if eu.Gate != "A" || !eu.LastContact.Equal(later) || eu.VersionSeen != 2 || eu.Lag != 1 || !eu.Connected ||
		eu.Replication == nil || eu.Replication.Synced != 4 || eu.Replication.Pending != 1 {
		t.Errorf("eu with gate A's newer contact: %+v", eu)
	}
	if asia.Gate != "A" || asia.VersionSeen != 1 || asia.Lag != 2 || asia.Connected {
		t.Errorf("asia, heard an hour ago by gate A only: %+v", asia)
	}
	// An older contact from the registry does not replace this gate's.
	p.primary.SetSiteContacts([]geo.SiteContact{{Name: "eu", LastContact: mine.LastContact.Add(-time.Minute), Gate: "A", VersionSeen: 0}})
	if eu := p.node(t, "eu"); eu.Gate != "B" || eu.VersionSeen != 1 || eu.Replication != nil {
		t.Errorf("eu after an older registry contact: %+v", eu)
	}
	// What this gate records: its own contacts, named by it.
	cs := p.primary.Contacts()
	if len(cs) != 1 || cs[0].Name != "eu" || cs[0].Gate != "B" || cs[0].VersionSeen != 1 {
		t.Errorf("contacts %+v", cs)
	}
}
