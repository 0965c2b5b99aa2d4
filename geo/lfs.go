package geo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gitgate/gitgate/gitgate"
	"github.com/gitgate/gitgate/lfs"
)

// API paths of LFS replication, served by the primary with a replicate
// token for the repository named in the query (?repo=).
const (
	// LFSObjectsPath lists the LFS objects linked to a repository.
	LFSObjectsPath = "/api/v4/geo/lfs/objects"
	// LFSObjectPath serves one LFS object of a repository (?repo=&oid=).
	LFSObjectPath = "/api/v4/geo/lfs/object"
)

// LFSListing is the answer of LFSObjectsPath.
type LFSListing struct {
	Repo    string       `json:"repo"`
	Objects []lfs.Object `json:"objects"`
}

// LFSObjectsHandler lists the LFS objects of the repository a replicate
// token is for.
func (p *Primary) LFSObjectsHandler(store *lfs.Store) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		repo, ok := p.verifyLFS(w, r)
		if !ok {
			return
		}
		objs, err := store.Objects(repo)
		if err != nil {
			p.log.Error("cannot list LFS objects for a Geo secondary", "repo", repo, "err", err)
			writeJSONMessage(w, http.StatusInternalServerError, "500 Internal Server Error")
			return
		}
		if objs == nil {
			objs = []lfs.Object{}
		}
		writeJSON(w, http.StatusOK, LFSListing{Repo: repo, Objects: objs})
	})
}

// LFSObjectHandler streams one LFS object of the repository a replicate
// token is for; an object not linked to it is 404.
func (p *Primary) LFSObjectHandler(store *lfs.Store) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		repo, ok := p.verifyLFS(w, r)
		if !ok {
			return
		}
		f, size, err := store.Open(repo, r.URL.Query().Get("oid"))
		if err != nil {
			writeJSONMessage(w, http.StatusNotFound, "404 Not Found")
			return
		}
		defer f.Close()
		h := w.Header()
		h.Set("Content-Type", "application/octet-stream")
		h.Set("Content-Length", strconv.FormatInt(size, 10))
		h.Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusOK)
		if r.Method == http.MethodGet {
			io.Copy(w, f)
		}
	})
}

// verifyLFS checks the method and that the replicate token is for the
// canonical repository in the query.
func (p *Primary) verifyLFS(w http.ResponseWriter, r *http.Request) (string, bool) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeJSONMessage(w, http.StatusMethodNotAllowed, "405 Method Not Allowed")
		return "", false
	}
	repo := r.URL.Query().Get("repo")
	if !canonical(repo) {
		writeJSONMessage(w, http.StatusBadRequest, "400 Bad Request: repo")
		return "", false
	}
	if _, err := p.verifier.VerifyRequest(r, ScopeReplicate, repo); err != nil {
		p.log.Warn("Geo request refused", "path", r.URL.Path, "remote_addr", r.RemoteAddr, "err", err)
		WriteUnauthorized(w, err)
		return "", false
	}
	return repo, true
}

// LFSChanged records an event for a repository whose LFS objects changed
// (an upload through the gate), so that the secondaries copy them at once.
// A repository the feed does not know yet is left to its next scan.
func (f *Feed) LFSChanged(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st, ok := f.known[name]
	if !ok {
		return
	}
	f.appendLocked(Event{Repo: name, State: st, LFS: true})
}

// UseLFS makes the replication copy the Git LFS objects of each
// repository into store; call it before Run.
func (r *Replicator) UseLFS(store *lfs.Store, maxObjectSize int64) {
	r.opts.LFS = store
	if maxObjectSize > 0 {
		r.opts.LFSMaxObjectSize = maxObjectSize
	}
}

// lfsStamp is what a verified object looked like on disk.
type lfsStamp struct {
	size  int64
	mtime time.Time
}

// LFSCounts are the LFS objects of a secondary by replication state.
type LFSCounts struct {
	// Synced objects are stored here and verified against oid and size.
	Synced int `json:"synced"`
	// Pending objects are listed on the primary and not (yet) here.
	Pending int `json:"pending"`
	// Failed objects could not be copied or did not verify; retried.
	Failed int `json:"failed"`
}

// errNotServed is a 404 from the primary.
var errNotServed = errors.New("not served by the primary (404)")

// maxLFSListing bounds an LFS listing read from the primary.
const maxLFSListing = 64 << 20

// syncLFS copies the LFS objects the primary links to repo that this site
// does not have verified, each streamed into the store, which checks its
// oid and size (a wrong or partial object never becomes one). An object
// already here is verified again only when its file changed since it was
// last verified (in this process: a restart verifies everything once).
func (r *Replicator) syncLFS(ctx context.Context, repo string) error {
	store := r.opts.LFS
	if store == nil {
		return nil
	}
	var l LFSListing
	asked := time.Now()
	err := r.getReplicate(ctx, LFSObjectsPath, repo, url.Values{"repo": {repo}}, maxLFSListing, &l)
	if errors.Is(err, errNotServed) {
		// A primary without an LFS store (or an older one): nothing to copy.
		r.setLFS(repo, LFSCounts{})
		return nil
	}
	if err != nil {
		return fmt.Errorf("lfs listing: %w", err)
	}
	r.pruneLFS(repo, l.Objects, asked)
	counts := LFSCounts{Pending: len(l.Objects)}
	r.setLFS(repo, counts)
	var firstErr error
	for _, o := range l.Objects {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		err := r.syncObject(ctx, repo, o)
		counts.Pending--
		if err != nil {
			counts.Failed++
			r.log.Warn("LFS object replication failed", "repo", repo, "oid", o.OID, "err", err)
			if firstErr == nil {
				firstErr = fmt.Errorf("lfs object %.12s: %w", o.OID, err)
			}
		} else {
			counts.Synced++
		}
		r.setLFS(repo, counts)
	}
	return firstErr
}

// syncObject makes one object present, verified and linked to repo.
func (r *Replicator) syncObject(ctx context.Context, repo string, o lfs.Object) error {
	store := r.opts.LFS
	if !lfs.ValidOID(o.OID) || o.Size < 0 {
		return lfs.ErrInvalidOID
	}
	if fi, err := store.ObjectStat(o.OID); err == nil {
		r.mu.Lock()
		st, seen := r.lfsVerified[o.OID]
		r.mu.Unlock()
		now := lfsStamp{size: fi.Size(), mtime: fi.ModTime()}
		if seen && st == now && now.size == o.Size {
			return store.Link(repo, o.OID)
		}
		if err := store.Check(o.OID, o.Size); err == nil {
			r.mu.Lock()
			r.lfsVerified[o.OID] = now
			r.mu.Unlock()
			return store.Link(repo, o.OID)
		} else if !errors.Is(err, fs.ErrNotExist) {
			r.log.Warn("LFS object does not match its oid on this site: copying it again", "repo", repo, "oid", o.OID, "err", err)
		}
	}
	r.mu.Lock()
	delete(r.lfsVerified, o.OID)
	r.mu.Unlock()
	if o.Size > r.opts.LFSMaxObjectSize {
		return fmt.Errorf("%d bytes: larger than this site accepts", o.Size)
	}
	body, err := r.openReplicate(ctx, LFSObjectPath, repo, url.Values{"repo": {repo}, "oid": {o.OID}})
	if err != nil {
		return err
	}
	defer body.Close()
	if _, err := store.Put(repo, o.OID, o.Size, body, nil); err != nil {
		return err
	}
	if fi, err := store.ObjectStat(o.OID); err == nil {
		r.mu.Lock()
		r.lfsVerified[o.OID] = lfsStamp{size: fi.Size(), mtime: fi.ModTime()}
		r.mu.Unlock()
	}
	r.log.Info("LFS object replicated from the Geo primary", "repo", repo, "oid", o.OID, "bytes", o.Size)
	return nil
}

func (r *Replicator) setLFS(repo string, c LFSCounts) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if rs := r.repos[repo]; rs != nil {
		rs.lfs = c
	}
}

// openReplicate GETs a path of the primary with a replicate token for
// repo and returns its body (the caller closes it). The transfer is bound
// by the fetch timeout.
func (r *Replicator) openReplicate(ctx context.Context, path, repo string, q url.Values) (io.ReadCloser, error) {
	resp, err := r.requestReplicate(ctx, http.MethodGet, path, repo, q)
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

// requestReplicate sends a GET or HEAD of a path of the primary with a
// replicate token for repo and returns its 200 answer; its body (a
// cancelBody) ends the request's deadline when closed.
func (r *Replicator) requestReplicate(ctx context.Context, method, path, repo string, q url.Values) (*http.Response, error) {
	ctx, cancel := context.WithTimeout(ctx, r.opts.FetchTimeout)
	u := r.f.endpoint(path)
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, method, u.String(), nil)
	if err != nil {
		cancel()
		return nil, err
	}
	if err := r.f.authorize(req, Claims{Scope: ScopeReplicate, Repo: repo}); err != nil {
		cancel()
		return nil, err
	}
	resp, err := r.f.client.Do(req)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		body, _ := readAllLimit(resp.Body, 4<<10)
		resp.Body.Close()
		cancel()
		if resp.StatusCode == http.StatusNotFound {
			return nil, fmt.Errorf("%s: %w", path, errNotServed)
		}
		return nil, fmt.Errorf("%s: %w: %s", path, errPrimaryStatus, jsonMessage(body, resp.Status))
	}
	resp.Body = &cancelBody{ReadCloser: resp.Body, cancel: cancel}
	return resp, nil
}

// getReplicate is openReplicate for a bounded JSON answer.
func (r *Replicator) getReplicate(ctx context.Context, path, repo string, q url.Values, limit int64, v any) error {
	body, err := r.openReplicate(ctx, path, repo, q)
	if err != nil {
		return err
	}
	defer body.Close()
	data, err := readAllLimit(body, limit)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return json.Unmarshal(data, v)
}

type cancelBody struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b *cancelBody) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}

// lfsPathRepo returns the repository (as written in the path) of a Git LFS
// API request: /<repo>.git/info/lfs/...
func lfsPathRepo(r *http.Request) (string, bool) {
	path := strings.TrimPrefix(r.URL.Path, "/")
	i := strings.Index(path, ".git/info/lfs/")
	if i <= 0 {
		return "", false
	}
	return path[:i], true
}

// lfsForwardedHeaders are the request headers a proxied LFS request
// carries to the primary; the client's credentials are not among them.
var lfsForwardedHeaders = [...]string{"Accept", "Content-Type", "User-Agent"}

// maxLFSProxyAnswer bounds a JSON answer of the primary's LFS API relayed
// to a client.
const maxLFSProxyAnswer = 16 << 20

// ProxyLFS sends a Git LFS API request that arrived on this secondary
// (an upload batch, an object upload or verify, a lock request; rest is
// the path after "/info/lfs/") to the same path on the primary, with a push token for user and repo in place
// of the client's credentials, and relays the primary's answer. The caller
// has authenticated the user and found that this site's policy allows the
// request; body is the request body (the bytes already read, or the
// stream). The primary applies its own access rules and maintenance state,
// and its batch answers point the client at the primary's own object
// endpoints, so object bytes go to the primary directly. If the primary
// cannot be reached or refuses this site's token, the client gets 502 in
// the LFS error format.
func (f *Follower) ProxyLFS(w http.ResponseWriter, r *http.Request, rest string, body io.Reader, contentLength int64, user *gitgate.User, repo string) {
	if !canonical(repo) || strings.Contains(rest, "..") || strings.HasPrefix(rest, "/") {
		lfsError(w, http.StatusNotFound, "Not Found")
		return
	}
	log := f.log.With("repo", repo, "user", user.String(), "transport", gitgate.TransportHTTP, "lfs", rest)
	target := f.endpoint("/" + repo + ".git/info/lfs/" + rest)
	target.RawQuery = r.URL.RawQuery
	f.primaryProxy(w, r, user, repo, log, proxyOptions{
		what: "LFS request", target: target, headers: lfsForwardedHeaders[:], refuse: lfsError,
		body: body, contentLength: contentLength, maxAnswer: maxLFSProxyAnswer,
	})
}

// lfsError answers in the Git LFS error format.
func lfsError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", lfs.MediaType)
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"message": msg})
}
