package lfs

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
)

// fakeOrigin serves objects by oid, whatever the repository.
type fakeOrigin map[string][]byte

func (o fakeOrigin) StatObject(_ context.Context, _, oid string) (int64, error) {
	b, ok := o[oid]
	if !ok {
		return 0, errors.New("404")
	}
	return int64(len(b)), nil
}

func (o fakeOrigin) OpenObject(_ context.Context, _, oid string) (io.ReadCloser, int64, error) {
	b, ok := o[oid]
	if !ok {
		return nil, 0, errors.New("404")
	}
	return io.NopCloser(bytes.NewReader(b)), int64(len(b)), nil
}

// TestFetchThroughFromOrigin: on a Geo secondary, an object the site has
// not copied yet is offered by the batch API when the primary has it, and
// its download streams from the primary into the store; a wrong copy is
// not stored, an object the primary lacks is 404.
func TestFetchThroughFromOrigin(t *testing.T) {
	good, bad, absent := []byte("on the primary only\n"), []byte("the primary's copy is wrong\n"), []byte("nowhere\n")
	origin := fakeOrigin{oidOf(good): good, oidOf(bad): bytes.ToUpper(bad)}
	f := newFixture(t, func(c *Config) { c.Origin = origin })

	a := f.batch(t, "proj", "rita", "download", good)
	if len(a.Objects) != 1 || a.Objects[0].Actions["download"].Href == "" {
		t.Fatalf("download batch for an object on the primary: %+v", a)
	}
	dl := a.Objects[0].Actions["download"]
	w := f.call("GET", strings.TrimPrefix(dl.Href, "http://127.0.0.1:8080"), dl.Header["Authorization"], nil)
	if w.Code != http.StatusOK || !bytes.Equal(w.Body.Bytes(), good) {
		t.Fatalf("download through: %d %q", w.Code, w.Body)
	}
	if size, ok := f.store.Stat("proj", oidOf(good)); !ok || size != int64(len(good)) {
		t.Fatal("the object fetched from the primary is not stored here")
	}

	if a := f.batch(t, "proj", "rita", "download", absent); a.Objects[0].Error == nil || a.Objects[0].Error.Code != http.StatusNotFound {
		t.Fatalf("download batch for an object nowhere: %+v", a.Objects[0])
	}
	if w := f.call("GET", "/proj.git/info/lfs/objects/"+oidOf(absent), "rita", nil); w.Code != http.StatusNotFound {
		t.Fatalf("download of an object nowhere: %d", w.Code)
	}
	f.call("GET", "/proj.git/info/lfs/objects/"+oidOf(bad), "rita", nil)
	if _, ok := f.store.Stat("proj", oidOf(bad)); ok {
		t.Fatal("a wrong copy from the primary was stored")
	}
	// Without read access, nothing is asked of the primary.
	if w := f.call("GET", "/secret.git/info/lfs/objects/"+oidOf(good), "rita", nil); w.Code != http.StatusNotFound {
		t.Fatalf("rita on secret: %d", w.Code)
	}
	if _, ok := f.store.Stat("secret", oidOf(good)); ok {
		t.Fatal("fetched into a repository the user cannot read")
	}
}
