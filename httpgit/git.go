package httpgit

import (
	"errors"
	"log/slog"
	"net/http"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/go-git/go-git/v5/plumbing/format/pktline"

	"github.com/gitgate/gitgate/gitgate"
)

// serveGit handles the smart HTTP endpoints: route → authenticate → resolve
// → decide → run git and stream, or refuse.
func (s *Server) serveGit(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rt, rerr := parseRoute(r)
	if rerr != nil {
		if rerr.status == http.StatusMethodNotAllowed {
			w.Header().Set("Allow", allowedMethods(r.URL.Path))
		}
		http.Error(w, rerr.msg, rerr.status)
		return
	}
	log := s.log.With("service", rt.service, "remote_addr", r.RemoteAddr)

	protocol, err := gitgate.ParseProtocol(r.Header.Get("Git-Protocol"))
	if err != nil {
		log.Warn("bad Git-Protocol header", "err", err)
		http.Error(w, "Invalid Git-Protocol header", http.StatusBadRequest)
		return
	}

	user, err := s.cfg.Auth.Authenticate(r)
	if err != nil {
		s.authFailed(w, rt, err, log)
		return
	}

	op := gitgate.Operation{
		Service:    rt.service,
		Repo:       rt.repo,
		User:       user,
		Transport:  gitgate.TransportHTTP,
		RemoteAddr: r.RemoteAddr,
	}
	repo, decision := s.cfg.Policy.Open(r.Context(), s.cfg.Resolver, &op)
	log = log.With("repo", op.Repo, "user", user.String())
	if refusal := decision.Refusal(); refusal != nil {
		if probe := s.refuse(w, r, rt, refusal, log); probe {
			log.Info("probe answered; the push that follows is refused", "reason", refusal.Message)
			return
		}
		log.Info("operation refused", "reason", refusal.Message, "cause", refusal.Cause)
		s.cfg.Tracker.Refused(op, refusal)
		return
	}

	if rt.service == gitgate.ReceivePack && s.cfg.PushProxy != nil {
		log.Info("push handed to the primary")
		s.cfg.PushProxy.ProxyHTTPPush(w, r, user, op.Repo)
		return
	}

	// A share of the git processes, held until git is reaped (waiting in
	// the limiter's bounded queue when none is free).
	// The client leaving while the request waits ends the wait (see
	// hangup.go): a waiter holds a place in the bounded queues.
	waitCtx, hungUp, stopWatch := watchHangUp(r.Context())
	release, err := s.cfg.Limiter.Wait(waitCtx, op)
	gone := hungUp()
	stopWatch()
	if err != nil && gone {
		log.Info("client hung up while waiting for a git slot")
		return
	}
	if err != nil {
		s.refuseBusy(w, r, rt, op, err, log)
		return
	}
	defer release()

	inv := gitgate.Invocation{Op: op, Repo: repo, Protocol: protocol, StatelessRPC: true}
	var res result
	if rt.endpoint == endpointInfoRefs {
		res = s.infoRefs(w, r, inv, log)
	} else {
		// The RPC is the operation: a push's data and a clone's pack flow here.
		end := s.cfg.Tracker.Begin(op)
		res = s.rpc(w, r, inv, log)
		outcome := gitgate.OutcomeOK
		switch {
		case res.refusedMaintenance:
			outcome = gitgate.OutcomeRefusedMaintenance
		case res.failed:
			outcome = gitgate.OutcomeError
		}
		end(outcome, res.sent)
	}
	log.Info("git request done", "endpoint", path.Base(r.URL.Path),
		"status", res.status, "bytes", res.sent, "failed", res.failed, "duration", time.Since(start))
}

// authFailed answers a request whose credentials were refused: 429 while
// the client is throttled, else 401 asking for credentials.
func (s *Server) authFailed(w http.ResponseWriter, rt route, err error, log *slog.Logger) {
	var throttled interface{ RetryAfter() time.Duration }
	if errors.As(err, &throttled) {
		log.Warn("sign-in throttled", "repo", rt.repo, "err", err)
		s.cfg.Tracker.AuthFailed(gitgate.TransportHTTP, "throttled")
		w.Header().Set("Retry-After", strconv.Itoa(int(throttled.RetryAfter().Seconds()+0.5)))
		http.Error(w, "Too many failed sign-ins: try again later.", http.StatusTooManyRequests)
		return
	}
	log.Warn("authentication failed", "repo", rt.repo, "err", err)
	s.cfg.Tracker.AuthFailed(gitgate.TransportHTTP, "bad_credentials")
	askForCredentials(w)
	http.Error(w, "HTTP Basic: Access denied", http.StatusUnauthorized)
}

// result is how a Git request went: the status sent, the bytes written, and
// whether it failed (git failed or the client went away, possibly after the
// headers were sent with 200).
type result struct {
	status int
	sent   int64
	failed bool
	// refusedMaintenance is set for a push that git started but the
	// maintenance fence stopped at its ref update.
	refusedMaintenance bool
}

// infoRefs writes the ref advertisement for the service.
func (s *Server) infoRefs(w http.ResponseWriter, r *http.Request, inv gitgate.Invocation, log *slog.Logger) result {
	h := w.Header()
	h.Set("Content-Type", "application/x-"+string(inv.Op.Service)+"-advertisement")
	noCache(h)
	out := &responseStream{w: w, rc: http.NewResponseController(w), idle: s.cfg.BodyIdleTimeout}
	// With protocol v2 git speaks first itself; before v2 the smart HTTP
	// advertisement starts with the service line (as git-http-backend does).
	if !isProtocolV2(inv.Protocol) {
		enc := pktline.NewEncoder(out)
		if err := enc.Encodef("# service=%s\n", inv.Op.Service); err != nil {
			return result{status: http.StatusOK, sent: out.n, failed: true}
		}
		if err := enc.Flush(); err != nil {
			return result{status: http.StatusOK, sent: out.n, failed: true}
		}
	}
	inv.AdvertiseRefs = true
	return s.runGit(r, out, inv, nil, nil, log)
}

// rpc runs an upload-pack or receive-pack request, streaming the request
// body into git and git's output into the response.
func (s *Server) rpc(w http.ResponseWriter, r *http.Request, inv gitgate.Invocation, log *slog.Logger) result {
	svc := string(inv.Op.Service)
	if ct := r.Header.Get("Content-Type"); ct != "application/x-"+svc+"-request" {
		http.Error(w, "Unsupported Media Type", http.StatusUnsupportedMediaType)
		return result{status: http.StatusUnsupportedMediaType, sent: 0, failed: true}
	}
	in, err := s.newBody(w, r, s.bodyLimit(inv.Op.Service))
	if err != nil {
		log.Warn("bad request body", "err", err)
		http.Error(w, "Bad Request", http.StatusBadRequest)
		return result{status: http.StatusBadRequest, sent: 0, failed: true}
	}
	defer in.Close()
	// git may answer (progress, keepalives) while still reading the request.
	rc := http.NewResponseController(w)
	_ = rc.EnableFullDuplex()
	h := w.Header()
	h.Set("Content-Type", "application/x-"+svc+"-result")
	noCache(h)
	inv.Stdin, inv.StopStdin = in, in.stop
	out := &responseStream{w: w, rc: rc, idle: s.cfg.BodyIdleTimeout}
	var rec *prefixRecorder
	if inv.Op.Service == gitgate.ReceivePack {
		// Keep the push's commands, to answer it if it is stopped at its
		// ref update (see prefixRecorder).
		rec = &prefixRecorder{r: in}
		inv.Stdin = rec
	}
	return s.runGit(r, out, inv, in, rec, log)
}

// runGit runs git with stdout streamed into out. in is the request body git
// reads, if any. git's stderr is kept (its tail) for the log. A request body
// that failed (malformed, over its limit, idle) is answered with its own
// status when nothing was sent yet.
func (s *Server) runGit(r *http.Request, out *responseStream, inv gitgate.Invocation, in *body, rec *prefixRecorder, log *slog.Logger) result {
	defer out.clearDeadlines()

	stderr := &tailBuffer{max: 2048}
	inv.Stdout, inv.Stderr = out, stderr
	// A push goes on if the client hangs up once its data is in; the
	// server's hard stop still ends it.
	inv.Stop = s.hardStop
	err := s.cfg.Runner.Run(r.Context(), inv)
	var bodyErr error
	if in != nil {
		bodyErr = in.Err()
	}
	if err == nil && bodyErr == nil {
		return result{status: http.StatusOK, sent: out.n, failed: false}
	}
	if rec != nil && bodyErr == nil && r.Context().Err() == nil && refusedAtCommit(stderr.String()) {
		if cmds := rec.commands(); cmds.caps != nil {
			log.Info("push stopped at its ref update: maintenance was switched on after its check")
			writePushRefusal(out, cmds, gitgate.MaintenanceMessage)
			return result{status: http.StatusOK, sent: out.n, failed: true, refusedMaintenance: true}
		}
	}
	log.Warn("git failed", "err", err, "body_err", bodyErr, "stderr", stderr.String(), "bytes_sent", out.n)
	if out.n > 0 {
		return result{status: http.StatusOK, sent: out.n, failed: true} // headers were sent; the client sees a cut stream
	}
	if bodyErr != nil {
		// The client's fault, whatever git made of its cut input.
		status := bodyStatus(bodyErr)
		out.w.Header().Set("Connection", "close")
		http.Error(out.w, http.StatusText(status), status)
		return result{status: status, sent: 0, failed: true}
	}
	if r.Context().Err() == nil {
		http.Error(out.w, "Internal Server Error", http.StatusInternalServerError)
		return result{status: http.StatusInternalServerError, sent: 0, failed: true}
	}
	return result{status: http.StatusOK, sent: 0, failed: true} // the client is gone
}

// refuseBusy answers a request the limiter refused, so that git shows the
// message: the ref advertisement with 503 and the text, a push's POST in
// the Git protocol like the policy's refusals, a fetch's POST with an ERR
// packet (git does not show the body of a failed POST).
func (s *Server) refuseBusy(w http.ResponseWriter, r *http.Request, rt route, op gitgate.Operation, err error, log *slog.Logger) {
	var refusal *gitgate.Refusal
	if !errors.As(err, &refusal) {
		refusal = gitgate.ErrBusy
	}
	w.Header().Set("Connection", "close") // the body is not read (or not all of it)
	if rt.endpoint == endpointRPC && rt.service == gitgate.ReceivePack {
		probe, err := s.refuseReceivePack(w, r, refusal.Message)
		if err == nil && probe {
			return // answered as allowed: the push that follows meets the limit again
		}
		s.refusedBusy(op, refusal, log)
		if err == nil {
			return
		}
		if !errors.Is(err, errNoReport) {
			log.Warn("could not refuse the push in the Git protocol; answering with an HTTP error", "err", err)
		}
	} else {
		s.refusedBusy(op, refusal, log)
		if rt.endpoint == endpointRPC {
			w.Header().Set("Content-Type", "application/x-"+string(rt.service)+"-result")
			noCache(w.Header())
			pktline.NewEncoder(w).Encodef("ERR %s\n", refusal.Message)
			return
		}
	}
	w.Header().Set("Retry-After", "10")
	writeRefusal(w, http.StatusServiceUnavailable, refusal.Message)
}

// refusedBusy logs and counts an operation the limiter refused.
func (s *Server) refusedBusy(op gitgate.Operation, refusal *gitgate.Refusal, log *slog.Logger) {
	log.Warn("operation refused: limit reached", "reason", refusal.Message, "cause", refusal.Cause)
	s.cfg.Tracker.Refused(op, refusal)
}

func isProtocolV2(protocol string) bool {
	for _, item := range strings.Split(protocol, ":") {
		if item == "version=2" {
			return true
		}
	}
	return false
}

// noCache sets the headers git-http-backend sends so that no proxy caches
// refs or packs.
func noCache(h http.Header) {
	h.Set("Expires", "Fri, 01 Jan 1980 00:00:00 GMT")
	h.Set("Pragma", "no-cache")
	h.Set("Cache-Control", "no-cache, max-age=0, must-revalidate")
}

func askForCredentials(w http.ResponseWriter) {
	w.Header().Set("WWW-Authenticate", `Basic realm="gitgate"`)
}

// responseStream writes to the response and flushes after every write, so
// progress messages and pack data reach the client as git produces them.
// It counts what was sent.
type responseStream struct {
	w    http.ResponseWriter
	rc   *http.ResponseController
	idle time.Duration // a write (to a client that reads nothing) may take this long; <= 0: forever
	n    int64
}

func (s *responseStream) Write(p []byte) (int, error) {
	if s.idle > 0 {
		s.rc.SetWriteDeadline(time.Now().Add(s.idle))
	}
	n, err := s.w.Write(p)
	s.n += int64(n)
	if err != nil {
		return n, err
	}
	if err := s.rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return n, err
	}
	return n, nil
}

// clearDeadlines removes the deadlines the stream and the body set, so
// that they do not outlive the request on a kept-alive connection.
func (s *responseStream) clearDeadlines() {
	s.rc.SetWriteDeadline(time.Time{})
	s.rc.SetReadDeadline(time.Time{})
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	max int
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string { return strings.TrimSpace(string(t.buf)) }
