package lfs

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gitgate/gitgate/gitgate"
)

// MediaType is the content type of every LFS API request and answer.
const MediaType = "application/vnd.git-lfs+json"

// Defaults for the zero values of [Config].
const (
	DefaultMaxBatchBody    = 1 << 20 // bytes of a batch or lock request
	DefaultMaxBatchObjects = 1000
	DefaultMaxObjectSize   = 10 << 30
	DefaultActionTTL       = 15 * time.Minute
	DefaultIdleTimeout     = 2 * time.Minute
)

// Texts shown to LFS clients besides the policy's own refusals.
const (
	objectMissingMessage = "Object does not exist"
	badTokenMessage      = "The LFS authorization is invalid or has expired; try again."
	badRequestMessage    = "Invalid LFS request."
	tooLargeMessage      = "The LFS object is larger than this server accepts."
	badUploadMessage     = "The uploaded object does not match its oid and size; nothing was stored."
	internalMessage      = "Internal server error. It has been logged; try again in a moment."
	lockExistsMessage    = "already created lock"
	notLockOwnerMessage  = "The lock belongs to another user; only its owner, or an administrator with --force, can unlock it."
	lockNotFoundMessage  = "Lock not found"
)

// Authenticator finds the user behind a request's credentials, as
// httpgit.Authenticator does: (nil, nil) for none, an error for bad ones.
type Authenticator interface {
	Authenticate(r *http.Request) (*gitgate.User, error)
}

// UserLookup finds the user a signed header was issued to, as they are
// now, when the credential it was issued on (an SSH key, an access token)
// is still theirs and valid: the same check of the live access data that
// signs Git requests in (access.Live implements it). An error refuses.
type UserLookup interface {
	UserByCredential(name, credential string) (*gitgate.User, error)
}

// Config holds a Server's dependencies. Policy, Resolver, Auth, Users,
// Store, Locks and Signer are required.
type Config struct {
	Policy   *gitgate.Policy
	Resolver *gitgate.Resolver
	Auth     Authenticator
	Users    UserLookup
	Store    *Store
	Locks    *Locks
	Signer   *Signer
	Tracker  *gitgate.Tracker
	Limiter  *gitgate.Limiter // shared with git: an object transfer takes a share
	Metrics  *Metrics
	Log      *slog.Logger

	// ExternalURL is the gate's public base URL (http://host:port); the
	// hrefs in batch answers and git-lfs-authenticate start with it. When
	// empty, HTTP answers use the address the request arrived on (its Host
	// header only when that names the same address), and SSH answers use
	// DefaultURL.
	ExternalURL string
	// DefaultURL gives the HTTP listener's URL, for SSH answers when no
	// ExternalURL is set.
	DefaultURL func() string
	// Primary is set on a Geo secondary: the writes this site's policy
	// allows (upload batches, object uploads and verifies) and every lock
	// request go to the Geo primary through it, which decides them again.
	Primary PrimaryProxy
	// Origin is set on a Geo secondary: an object linked to a repository
	// on the primary that this site has not copied yet is fetched from it
	// when a client asks for it, rather than answered 404.
	Origin Origin
	// OnStored, when set, is called after an object has been stored and
	// linked to a repository (a Geo primary records a change for it).
	OnStored func(repo string)

	MaxBatchBody    int64
	MaxBatchObjects int
	MaxObjectSize   int64
	ActionTTL       time.Duration
	IdleTimeout     time.Duration
}

// PrimaryProxy sends an LFS API request to the Geo primary, on behalf of
// user, for the canonical repository repo; rest is the path after
// "/info/lfs/" and body the request body (the bytes already read, or the
// stream), contentLength its length (-1: unknown). It answers the client.
type PrimaryProxy interface {
	ProxyLFS(w http.ResponseWriter, r *http.Request, rest string, body io.Reader, contentLength int64, user *gitgate.User, repo string)
}

// Server serves the LFS API under /<repo>.git/info/lfs/.
type Server struct {
	cfg Config
	log *slog.Logger
}

// New returns a Server for cfg.
func New(cfg Config) (*Server, error) {
	if cfg.Policy == nil || cfg.Resolver == nil || cfg.Auth == nil || cfg.Users == nil ||
		cfg.Store == nil || cfg.Locks == nil || cfg.Signer == nil {
		return nil, errors.New("lfs: Policy, Resolver, Auth, Users, Store, Locks and Signer are required")
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Tracker == nil {
		cfg.Tracker = gitgate.NewTracker(nil)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics()
	}
	setDefault(&cfg.MaxBatchBody, DefaultMaxBatchBody)
	setDefault(&cfg.MaxBatchObjects, DefaultMaxBatchObjects)
	setDefault(&cfg.MaxObjectSize, DefaultMaxObjectSize)
	setDefault(&cfg.ActionTTL, DefaultActionTTL)
	setDefault(&cfg.IdleTimeout, DefaultIdleTimeout)
	cfg.ExternalURL = strings.TrimRight(cfg.ExternalURL, "/")
	return &Server{cfg: cfg, log: cfg.Log.With("transport", gitgate.TransportHTTP)}, nil
}

func setDefault[T int | int64 | time.Duration](v *T, d T) {
	if *v <= 0 {
		*v = d
	}
}

// endpoint is one LFS API endpoint.
type endpoint int

const (
	epBatch endpoint = iota + 1
	epObject
	epVerify
	epLocks
	epLocksVerify
	epUnlock
)

// route is a parsed LFS request.
type route struct {
	repo string // as sent, before /info/lfs/
	ep   endpoint
	oid  string // epObject
	id   string // epUnlock
}

// parseRoute maps method and path to an endpoint; ok is false for 404, and
// allow is set for a known path with the wrong method.
func parseRoute(method, p string) (rt route, allow string, ok bool) {
	repo, rest, found := strings.Cut(strings.TrimPrefix(p, "/"), "/info/lfs/")
	if !found || repo == "" {
		return route{}, "", false
	}
	rt.repo = repo
	want := http.MethodPost
	switch {
	case rest == "objects/batch":
		rt.ep = epBatch
	case strings.HasPrefix(rest, "objects/"):
		rt.ep, rt.oid = epObject, strings.TrimPrefix(rest, "objects/")
		if !ValidOID(rt.oid) {
			return route{}, "", false
		}
		if method != http.MethodGet && method != http.MethodPut {
			return rt, "GET, PUT", true
		}
		return rt, "", true
	case rest == "verify":
		rt.ep = epVerify
	case rest == "locks":
		rt.ep = epLocks
		if method != http.MethodGet && method != http.MethodPost {
			return rt, "GET, POST", true
		}
		return rt, "", true
	case rest == "locks/verify":
		rt.ep = epLocksVerify
	case strings.HasPrefix(rest, "locks/") && strings.HasSuffix(rest, "/unlock"):
		rt.ep, rt.id = epUnlock, strings.TrimSuffix(strings.TrimPrefix(rest, "locks/"), "/unlock")
		if !validLockID(rt.id) {
			return route{}, "", false
		}
	default:
		return route{}, "", false
	}
	if method != want {
		return rt, want, true
	}
	return rt, "", true
}

func validLockID(id string) bool {
	if len(id) != 32 {
		return false
	}
	return ValidOID(id + id) // 32 lowercase hex digits
}

// errorBody is the LFS error format.
type errorBody struct {
	Message   string `json:"message"`
	RequestID string `json:"request_id,omitempty"`
}

// writeJSON answers status with v in the LFS media type.
func writeJSON(w http.ResponseWriter, status int, v any) {
	h := w.Header()
	h.Set("Content-Type", MediaType)
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// writeError answers status with msg in the LFS error format, with the
// request's id (git-lfs prints it under the message; the log has it too).
func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, errorBody{Message: msg, RequestID: w.Header().Get(requestIDHeader)})
}

// requestIDHeader carries the id of each LFS request, in the answer and
// the log.
const requestIDHeader = "X-Request-Id"

func newRequestID() string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// request is one authenticated, decided LFS request.
type request struct {
	op    gitgate.Operation
	grant *Grant // the signed header's, if that is how the request signed in
	log   *slog.Logger
}

// ServeHTTP is the LFS API, top to bottom: route → authenticate → read the
// (bounded) JSON request → resolve and decide with the policy → serve.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id := newRequestID()
	w.Header().Set(requestIDHeader, id)
	rt, allow, ok := parseRoute(r.Method, r.URL.Path)
	switch {
	case !ok:
		writeError(w, http.StatusNotFound, "Not Found")
		return
	case allow != "":
		w.Header().Set("Allow", allow)
		writeError(w, http.StatusMethodNotAllowed, "Method Not Allowed")
		return
	}
	log := s.log.With("request_id", id, "remote_addr", r.RemoteAddr, "lfs", r.URL.Path[strings.Index(r.URL.Path, "/info/lfs/")+len("/info/lfs/"):])

	user, grant, err := s.authenticate(r)
	if err != nil {
		log.Warn("lfs authentication failed", "err", err)
		s.cfg.Tracker.AuthFailed(gitgate.TransportHTTP, "bad_credentials")
		var throttled interface{ RetryAfter() time.Duration }
		if errors.As(err, &throttled) {
			w.Header().Set("Retry-After", strconv.Itoa(int(throttled.RetryAfter().Seconds()+0.5)))
			writeError(w, http.StatusTooManyRequests, "Too many failed sign-ins: try again later.")
			return
		}
		if errors.Is(err, ErrBadToken) {
			writeError(w, http.StatusUnauthorized, badTokenMessage)
			return
		}
		w.Header().Set("LFS-Authenticate", `Basic realm="gitgate"`)
		writeError(w, http.StatusUnauthorized, "HTTP Basic: Access denied")
		return
	}

	// The request's JSON comes before the decision: a batch says in it
	// whether it downloads or uploads. It is bounded, and it is not object
	// data.
	var batch batchRequest
	var lockReq lockRequest
	var raw []byte // the JSON request as it came, for the Geo primary
	svc := gitgate.LFSDownload
	switch rt.ep {
	case epBatch:
		if raw, ok = s.readJSON(w, r, &batch); !ok {
			return
		}
		switch batch.Operation {
		case "download":
		case "upload":
			svc = gitgate.LFSUpload
		default:
			writeError(w, http.StatusUnprocessableEntity, "The batch operation must be download or upload.")
			return
		}
	case epObject:
		if r.Method == http.MethodPut {
			svc = gitgate.LFSUpload
		}
	case epVerify:
		svc = gitgate.LFSUpload
	case epLocks:
		if r.Method == http.MethodPost {
			svc = gitgate.LFSLock
		}
	case epUnlock:
		svc = gitgate.LFSLock
	}
	if r.Method == http.MethodPost && rt.ep != epBatch {
		if raw, ok = s.readJSON(w, r, &lockReq); !ok {
			return
		}
	}

	req := &request{op: gitgate.Operation{Service: svc, Repo: rt.repo, User: user,
		Transport: gitgate.TransportHTTP, RemoteAddr: r.RemoteAddr}, grant: grant}
	if !s.decide(w, r, req, rt, log) {
		return
	}
	req.log = log.With("repo", req.op.Repo, "user", req.op.User.String(), "service", string(svc))
	if s.cfg.Primary != nil && (svc.IsWrite() || rt.ep == epLocks || rt.ep == epLocksVerify || rt.ep == epUnlock) {
		// A Geo secondary: the primary holds the objects' writes and
		// the locks, and decides again with its own state.
		var body io.Reader = bytes.NewReader(raw)
		size := int64(len(raw))
		if raw == nil {
			body, size = r.Body, r.ContentLength
			if r.Method == http.MethodGet {
				body, size = http.NoBody, 0
			}
		}
		rest := r.URL.Path[strings.Index(r.URL.Path, "/info/lfs/")+len("/info/lfs/"):]
		s.cfg.Primary.ProxyLFS(w, r, rest, body, size, req.op.User, req.op.Repo)
		return
	}

	switch rt.ep {
	case epBatch:
		s.batch(w, r, req, &batch)
	case epObject:
		if r.Method == http.MethodGet {
			s.download(w, r, req, rt.oid)
		} else {
			s.upload(w, r, req, rt.oid)
		}
	case epVerify:
		s.verify(w, req, &lockReq)
	case epLocks:
		if r.Method == http.MethodGet {
			s.listLocks(w, r, req)
		} else {
			s.createLock(w, req, &lockReq)
		}
	case epLocksVerify:
		s.verifyLocks(w, req)
	case epUnlock:
		s.unlock(w, req, rt.id, &lockReq)
	}
}

// authenticate returns the request's user: from the gate's own signed
// header (checked, and its user looked up again), or from the credentials
// Git requests use.
func (s *Server) authenticate(r *http.Request) (*gitgate.User, *Grant, error) {
	g, signed, err := s.cfg.Signer.Verify(r.Header.Get("Authorization"))
	if !signed {
		user, err := s.cfg.Auth.Authenticate(r)
		return user, nil, err
	}
	if err != nil {
		return nil, nil, err
	}
	if g.User == "" {
		return nil, &g, nil
	}
	// Every use checks the credential the grant was issued on again, so
	// removing the user, their key or their token stops it at once.
	found, err := s.cfg.Users.UserByCredential(g.User, g.Cred)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: issued on a credential no longer valid: %w", ErrBadToken, err)
	}
	user := *found // the user as they are now, with the issuing token's scopes
	user.Scopes = g.Scopes
	return &user, &g, nil
}

// decide resolves the repository and asks the policy, then checks that a
// signed header covers this request. It answers the refusal itself and
// returns false when the request may not go on.
func (s *Server) decide(w http.ResponseWriter, r *http.Request, req *request, rt route, log *slog.Logger) bool {
	req.log = log
	_, d := s.cfg.Policy.Open(r.Context(), s.cfg.Resolver, &req.op)
	if refusal := d.Refusal(); refusal != nil {
		s.refuse(w, req, refusal)
		return false
	}
	if g := req.grant; g != nil {
		op := "download"
		if req.op.Service != gitgate.LFSDownload {
			op = "upload"
		}
		// A grant is for one repository and one operation (an upload
		// grant also reads); an object grant (the batch's action header)
		// is for that object's endpoint only.
		okRepo := g.Repo == req.op.Repo
		okOp := g.Op == op || (g.Op == "upload" && op == "download" && g.OID == "")
		okObj := g.OID == "" || (rt.ep == epObject && rt.oid == g.OID)
		if !okRepo || !okOp || !okObj {
			req.log.Warn("lfs authorization used outside its grant", "grant_repo", g.Repo, "repo", req.op.Repo,
				"grant_op", g.Op, "op", op, "remote_addr", r.RemoteAddr)
			writeError(w, http.StatusUnauthorized, badTokenMessage)
			return false
		}
	}
	return true
}

// refuse answers a policy refusal in the LFS error format. The statuses
// follow the LFS API: 401 asks for credentials, 404 hides the repository,
// 403 refuses a write (maintenance, no write access).
func (s *Server) refuse(w http.ResponseWriter, req *request, r *gitgate.Refusal) {
	req.log.Info("lfs operation refused", "repo", req.op.Repo, "user", req.op.User.String(),
		"service", string(req.op.Service), "reason", r.Message, "cause", r.Cause)
	s.cfg.Tracker.Refused(req.op, r)
	s.cfg.Metrics.refused(req.op.Service, refusalReason(r))
	status := http.StatusForbidden
	switch r.Kind {
	case gitgate.RefusedUnauthenticated:
		status = http.StatusUnauthorized
		w.Header().Set("LFS-Authenticate", `Basic realm="gitgate"`)
	case gitgate.RefusedNotFound:
		status = http.StatusNotFound
	case gitgate.RefusedBusy:
		status = http.StatusTooManyRequests
	}
	writeError(w, status, r.Message)
}

func refusalReason(r *gitgate.Refusal) string {
	switch r.Kind {
	case gitgate.RefusedMaintenance, gitgate.RefusedStateUnavailable:
		return "maintenance"
	case gitgate.RefusedNotFound, gitgate.RefusedUnauthenticated:
		return "not_found"
	case gitgate.RefusedBusy:
		return "busy"
	}
	return "forbidden"
}

// readJSON decodes a bounded JSON request body into v and returns its
// bytes, answering 4xx and returning false when it cannot.
func (s *Server) readJSON(w http.ResponseWriter, r *http.Request, v any) ([]byte, bool) {
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBatchBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, "The LFS request is too large.")
			return nil, false
		}
		writeError(w, http.StatusUnprocessableEntity, badRequestMessage)
		return nil, false
	}
	if err := json.NewDecoder(bytes.NewReader(raw)).Decode(v); err != nil {
		writeError(w, http.StatusUnprocessableEntity, badRequestMessage)
		return nil, false
	}
	return raw, true
}

// repoURL is <base>/<repo>.git/info/lfs, each name segment escaped.
func (s *Server) repoURL(r *http.Request, repo string) string {
	segs := strings.Split(repo, "/")
	for i, seg := range segs {
		segs[i] = url.PathEscape(seg)
	}
	return s.baseURL(r) + "/" + strings.Join(segs, "/") + ".git/info/lfs"
}

// grantFor signs a header for the request's user on its repository.
func (s *Server) grantFor(req *request, op, oid string, size int64) map[string]string {
	g := Grant{Repo: req.op.Repo, Op: op, OID: oid, Size: size}
	if u := req.op.User; u != nil {
		g.User, g.Scopes, g.Cred = u.Name, u.Scopes, u.Credential
	}
	return map[string]string{"Authorization": s.cfg.Signer.Sign(g, s.cfg.ActionTTL)}
}

// SSHAuthenticate answers git-lfs-authenticate for op (Repo as the client
// sent it; User set): the href of the repository's LFS API and a signed
// header for it, bound to the user, the repository and the operation
// ("download" or "upload"). It resolves and decides as every door does; a
// download needs read access, and so does an upload's header: the write
// itself is decided, with the maintenance state of that moment, when the
// batch request comes, so that git-lfs shows the refusal's message. The
// error is a *gitgate.Refusal when the policy refuses.
func (s *Server) SSHAuthenticate(ctx context.Context, op *gitgate.Operation, operation string) ([]byte, error) {
	if operation != "download" && operation != "upload" {
		return nil, fmt.Errorf("lfs: unknown operation %q", operation)
	}
	op.Service = gitgate.LFSDownload
	_, d := s.cfg.Policy.Open(ctx, s.cfg.Resolver, op)
	if r := d.Refusal(); r != nil {
		s.cfg.Tracker.Refused(*op, r)
		s.cfg.Metrics.refused(op.Service, refusalReason(r))
		return nil, r
	}
	base := s.repoURL(nil, op.Repo)
	if !strings.HasPrefix(base, "http") {
		return nil, errors.New("lfs: no URL for the HTTP API: set --external-url")
	}
	req := &request{op: *op}
	ttl := s.cfg.ActionTTL
	return json.Marshal(map[string]any{
		"href":       base,
		"header":     s.grantFor(req, operation, "", 0),
		"expires_in": int(ttl.Seconds()),
	})
}
