package pgstore

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gitgate/gitgate/gitgate"
)

// A state change's NOTIFY carries the whole new state, so that a gate
// publishes it without reading the database again; a state too large for
// a payload is announced by its version alone (then re-read).
func TestStateNotifyCarriesTheState(t *testing.T) {
	db, url := migrated(t)
	ctx := t.Context()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "LISTEN "+ChannelState); err != nil {
		t.Fatal(err)
	}
	next := func() string {
		t.Helper()
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		n, err := conn.WaitForNotification(wctx)
		if err != nil {
			t.Fatal(err)
		}
		return n.Payload
	}
	msg := "moving racks, back at 10:00 — ünïcode"
	want, err := db.Apply(ctx, gitgate.Change{Enabled: new(true), Message: &msg, By: "api:alice"})
	if err != nil {
		t.Fatal(err)
	}
	got, ok := parseNotifyPayload(next())
	if !ok || got.Version != want.Version || !got.Enabled || got.Message != msg || got.By != "api:alice" ||
		!got.Since.Equal(want.Since.Truncate(time.Microsecond)) {
		t.Fatalf("payload state %+v (usable %v), want %+v", got, ok, want)
	}
	// Disabled.
	if want, err = db.Apply(ctx, gitgate.Change{Enabled: new(false), By: "cli:root"}); err != nil {
		t.Fatal(err)
	}
	if got, ok := parseNotifyPayload(next()); !ok || got.Enabled || !got.Since.Equal(want.Since.Truncate(time.Microsecond)) || got.Version != want.Version {
		t.Fatalf("payload state %+v (usable %v), want %+v", got, ok, want)
	}
	// Over PostgreSQL's 8000-byte bound: the version alone.
	big := gitgate.State{Version: want.Version + 1, By: strings.Repeat("b", 9000)}
	if _, err := db.Mirror(ctx, big, false); err != nil {
		t.Fatal(err)
	}
	if p := next(); p != "3" {
		t.Fatalf("payload of a state too large to carry: %.80q, want the version alone", p)
	}
	for _, p := range []string{"3", "", "{", `{"v":4}`, `{"v":-1,"e":false,"m":"","b":""}`, `{"v":0,"e":true,"m":"","b":""}`,
		`{"v":4,"e":false,"m":"` + strings.Repeat("x", 300) + `","b":""}`} {
		if st, ok := parseNotifyPayload(p); ok {
			t.Errorf("payload %.40q read as %+v", p, st)
		}
	}
}

// A state a NOTIFY carried is published without a read (the database says
// otherwise here, so a read would show); an older version, or the same
// version with another content, is not taken: the next load reads the
// database. A payload never steps the state back.
func TestStateViewOffer(t *testing.T) {
	db, _ := migrated(t)
	ctx := t.Context()
	st, err := db.Apply(ctx, gitgate.Change{Enabled: new(true), By: "test"}) // version 1 in the database
	if err != nil {
		t.Fatal(err)
	}
	v := NewStateView(db, 10*time.Second)
	if got, err := v.Load(ctx); err != nil || got.Version != st.Version {
		t.Fatalf("load: %+v, %v", got, err)
	}
	if !v.Offer(`{"v":5,"e":false,"m":"from the payload","s":null,"b":"x"}`) {
		t.Fatal("a newer state was not taken")
	}
	if !v.Offer(`{"v":4,"e":true,"m":"older","s":null,"b":"x"}`) {
		t.Fatal("an older payload after a newer one, both newer than the last load, was refused")
	}
	if got, err := v.Load(ctx); err != nil || got.Version != 5 || got.Message != "from the payload" {
		t.Fatalf("load after the offer: %+v, %v; want the payload's version 5", got, err)
	}
	for _, p := range []string{`{"v":4,"e":true,"m":"","s":null,"b":"x"}`, `{"v":5,"e":true,"m":"other","s":null,"b":"x"}`, "6", "garbage"} {
		if v.Offer(p) {
			t.Errorf("payload %q taken after version 5", p)
		}
	}
	// Not taken: the next load reads the database (version 1 there).
	if got, err := v.Load(ctx); err != nil || got.Version != st.Version {
		t.Fatalf("load after refused offers: %+v, %v; want the database's", got, err)
	}
	if !v.Offer(`{"v":1,"e":true,"m":"","s":null,"b":"test"}`) {
		t.Error("the same state again was refused")
	}
}
