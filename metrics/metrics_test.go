package metrics

import (
	"errors"
	"io"
	"net/http/httptest"
	"regexp"
	"testing"
	"time"

	"github.com/gitgate/gitgate/gitgate"
)

type fixedState gitgate.Snapshot

func (f *fixedState) Current() gitgate.Snapshot { return gitgate.Snapshot(*f) }

func scrape(t *testing.T, m *Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	return string(body)
}

func TestMetricsFollowOperationsAndState(t *testing.T) {
	state := &fixedState{State: gitgate.State{Enabled: true, Version: 4, Since: time.Unix(1700000000, 0)}}
	m := New(state)
	tr := gitgate.NewTracker(m)
	push := gitgate.Operation{Service: gitgate.ReceivePack, Transport: gitgate.TransportSSH}
	end := tr.Begin(push)
	mid := scrape(t, m)
	end(gitgate.OutcomeOK, 1234)
	tr.Refused(push, gitgate.ErrMaintenance)
	tr.AuthFailed(gitgate.TransportHTTP, "bad_credentials")
	state.Err = errors.New("corrupt")
	after := scrape(t, m)

	for _, want := range []struct{ body, re string }{
		{mid, `(?m)^gitgate_operations_in_flight\{service="git-receive-pack",transport="ssh"\} 1$`},
		{after, `(?m)^gitgate_operations_in_flight\{service="git-receive-pack",transport="ssh"\} 0$`},
		{after, `(?m)^gitgate_operations_total\{outcome="ok",service="git-receive-pack",transport="ssh"\} 1$`},
		{after, `(?m)^gitgate_operations_total\{outcome="refused_maintenance",service="git-receive-pack",transport="ssh"\} 1$`},
		{after, `(?m)^gitgate_push_refused_maintenance_total\{transport="ssh"\} 1$`},
		{after, `(?m)^gitgate_bytes_served_total\{service="git-receive-pack",transport="ssh"\} 1234$`},
		{after, `(?m)^gitgate_auth_failures_total\{reason="bad_credentials",transport="http"\} 1$`},
		{after, `(?m)^gitgate_maintenance_enabled 1$`},
		{after, `(?m)^gitgate_maintenance_state_version 4$`},
		{after, `(?m)^gitgate_maintenance_since_timestamp_seconds 1\.7e\+09$`},
		{after, `(?m)^gitgate_maintenance_state_unreadable 1$`},
	} {
		if !regexp.MustCompile(want.re).MatchString(want.body) {
			t.Errorf("no match for %s", want.re)
		}
	}
}
