package geo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/go-git/go-git/v5/plumbing/format/pktline"

	"github.com/gitgate/gitgate/gitgate"
)

// What a user sees when a push through a secondary cannot be handed to the
// primary. Pushes refused by the primary show the primary's own words.
const (
	// PrimaryUnreachableMessage: the primary did not answer (or failed).
	PrimaryUnreachableMessage = "Git push is not possible right now: this is a Geo secondary site and the primary site cannot be reached. Try again later."
	// PrimaryRefusedSiteMessage: the primary refused this site's push token
	// (a configuration problem between the sites, not the user's).
	PrimaryRefusedSiteMessage = "Git push is not possible right now: this is a Geo secondary site and the primary site did not accept its credentials. An administrator has been alerted."
)

// receivePackService is git-receive-pack's name on the wire.
const receivePackService = string(gitgate.ReceivePack)

// forwardedHeaders are the request headers a proxied push carries to the
// primary. The client's credentials (Authorization, PRIVATE-TOKEN, cookies)
// are not among them: the push carries this site's token instead.
var forwardedHeaders = [...]string{
	"Accept", "Accept-Encoding", "Accept-Language", "Content-Encoding", "Content-Type", "Git-Protocol", "User-Agent",
}

// errSiteRefused marks a 401 from the primary to a proxied push.
var errSiteRefused = errors.New("the primary refused this site's push token")

// ProxyHTTPPush forwards one smart HTTP push request to the primary: GET
// /<repo>.git/info/refs?service=git-receive-pack or POST
// /<repo>.git/git-receive-pack. The caller has authenticated user (nil:
// anonymous) and found that this site's policy allows the push (that is,
// this site is not in maintenance); repo is the canonical repository name
// ([gitgate.Policy.Open]), and any other spelling is answered 404.
//
// The request goes to the same path on the primary with a push token for
// user and repo in place of the client's credentials; bodies stream both
// ways, and the primary's status, headers and body reach the client as
// they are, so the client sees the primary's answer, messages included.
// The primary applies its own access rules and maintenance state. If the
// primary cannot be reached the client gets 502 and
// PrimaryUnreachableMessage; if it refuses this site's token, 502 and
// PrimaryRefusedSiteMessage (relaying its 401 would make git drop the
// user's stored credentials, which are not at fault).
func (f *Follower) ProxyHTTPPush(w http.ResponseWriter, r *http.Request, user *gitgate.User, repo string) {
	endpoint, ok := receivePackEndpoint(r)
	if !ok || !canonical(repo) {
		http.Error(w, "Not Found", http.StatusNotFound)
		return
	}
	canon := repo
	log := f.log.With("repo", canon, "user", user.String(), "transport", gitgate.TransportHTTP, "endpoint", endpoint)
	target := f.endpoint("/" + canon + ".git/" + endpoint)
	if endpoint == "info/refs" {
		target.RawQuery = "service=" + receivePackService
	}
	f.primaryProxy(w, r, user, canon, log, proxyOptions{
		what: "push", target: target, headers: forwardedHeaders[:], refuse: refuseHTTP, stream: true,
	})
}

// receivePackEndpoint names the push endpoint r asks for: "info/refs"
// (GET) or "git-receive-pack" (POST). The caller has routed the request
// already; the repository in its path is not looked at again.
func receivePackEndpoint(r *http.Request) (string, bool) {
	switch r.Method {
	case http.MethodGet:
		return "info/refs", true
	case http.MethodPost:
		return receivePackService, true
	}
	return "", false
}

// canonical reports whether repo is a canonical repository name, as
// [gitgate.Policy.Open] gives: the proxy forwards the name it was given and
// no other spelling.
func canonical(repo string) bool {
	c, err := gitgate.CleanName(repo)
	return err == nil && c == repo
}

// receivePackRepo returns the repository (as written in the path) and the
// endpoint of a smart HTTP push request.
func receivePackRepo(r *http.Request) (repo, endpoint string, ok bool) {
	path := strings.TrimPrefix(r.URL.Path, "/")
	if repo, found := strings.CutSuffix(path, "/info/refs"); found {
		return repo, "info/refs", r.Method == http.MethodGet && r.URL.Query().Get("service") == receivePackService
	}
	if repo, found := strings.CutSuffix(path, "/"+receivePackService); found {
		return repo, receivePackService, r.Method == http.MethodPost
	}
	return "", "", false
}

// uploadPackRepo returns the repository (as written in the path) of a smart
// HTTP fetch request: GET info/refs?service=git-upload-pack or POST
// git-upload-pack.
func uploadPackRepo(r *http.Request) (string, bool) {
	path := strings.TrimPrefix(r.URL.Path, "/")
	if repo, found := strings.CutSuffix(path, "/info/refs"); found {
		return repo, r.Method == http.MethodGet && r.URL.Query().Get("service") == string(gitgate.UploadPack)
	}
	if repo, found := strings.CutSuffix(path, "/"+string(gitgate.UploadPack)); found {
		return repo, r.Method == http.MethodPost
	}
	return "", false
}

func pushClaims(user *gitgate.User, repo string) Claims {
	c := Claims{Scope: ScopePush, Repo: repo}
	if user != nil {
		c.User, c.Admin, c.Credential = user.Name, user.Admin, user.Credential
	}
	return c
}

// refuseHTTP answers with a plain-text message, which git shows as
// "remote: <message>".
func refuseHTTP(w http.ResponseWriter, status int, msg string) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-cache, max-age=0, must-revalidate")
	w.WriteHeader(status)
	io.WriteString(w, msg+"\n")
}

// ProxySSHPush runs a push that arrived over SSH (git-receive-pack) on the
// primary, over smart HTTP, as gitlab-shell does on a Geo secondary. The
// caller has authenticated user and found that this site's policy allows
// the push; repo is the canonical repository name and protocol the client's
// validated GIT_PROTOCOL ("" for none). stdin and stdout are the session's
// streams.
//
// The primary's ref advertisement is written to stdout; what the client
// then sends (commands, push options, pack) streams to the primary as the
// body of the receive-pack POST, which ends where the push data ends (the
// pack's framing is followed, since the client keeps stdin open to read the
// report); the primary's answer streams back to stdout. A client with
// nothing to push sends no POST.
//
// When the primary refuses at the advertisement (maintenance, not found,
// forbidden), the error is a *gitgate.Refusal with the primary's message,
// for the caller to show in its own format; if the primary cannot be
// reached or refuses this site's token, a Refusal with
// PrimaryUnreachableMessage or PrimaryRefusedSiteMessage.
//
// stdin is read in a goroutine. If ctx ends or the primary answers before
// the push data ended, a stdin with SetReadDeadline (an *os.File pipe, a
// net.Conn) is unblocked and the goroutine is waited for; any other stdin
// must be closed by the caller after ProxySSHPush returns (an SSH server
// closes the channel), which ends the goroutine.
func (f *Follower) ProxySSHPush(ctx context.Context, user *gitgate.User, repo, protocol string, stdin io.Reader, stdout io.Writer) error {
	if !canonical(repo) {
		return gitgate.ErrNotFound
	}
	canon := repo
	log := f.log.With("repo", canon, "user", user.String(), "transport", gitgate.TransportSSH)
	start := time.Now()

	resp, err := f.pushRequest(ctx, http.MethodGet, canon, user, protocol, nil)
	if err != nil {
		return f.unreachable(ctx, log, err)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		return f.primaryRefusal(resp, log)
	}
	err = copyAdvertisement(stdout, resp.Body)
	resp.Body.Close()
	if err != nil {
		return fmt.Errorf("relay the primary's ref advertisement: %w", err)
	}

	pr, pw := io.Pipe()
	defer pr.Close()
	pushing := make(chan bool, 1)
	pumpDone := make(chan error, 1)
	go func() {
		err := pumpPush(stdin, pw, pushing)
		pumpDone <- err        // first: the request body's end means the pump is done
		pw.CloseWithError(err) // nil: the end of the request body
	}()
	select {
	case push := <-pushing:
		if !push {
			log.Info("nothing to push")
			return <-pumpDone
		}
	case err := <-pumpDone:
		if err == nil {
			// The pump finished without a push (a flush alone) and
			// its done came out of the select before its "pushing":
			// both are ready by then.
			log.Info("nothing to push")
			return nil
		}
		return fmt.Errorf("read the push commands: %w", err)
	case <-ctx.Done():
		pr.CloseWithError(ctx.Err())
		waitPump(stdin, pumpDone)
		return ctx.Err()
	}

	resp, err = f.pushRequest(ctx, http.MethodPost, canon, user, protocol, pr)
	if err != nil {
		pr.CloseWithError(err)
		waitPump(stdin, pumpDone)
		return f.unreachable(ctx, log, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		pr.CloseWithError(errors.New("the primary refused the push"))
		waitPump(stdin, pumpDone)
		return f.primaryRefusal(resp, log)
	}
	_, err = io.Copy(stdout, resp.Body)
	pr.CloseWithError(errors.New("the primary has answered"))
	perr := waitPump(stdin, pumpDone)
	if err != nil {
		return fmt.Errorf("relay the primary's push report: %w", err)
	}
	if perr != nil {
		log.Debug("push stream ended early: the primary answered first", "err", perr)
	}
	log.Info("push proxied to the Geo primary", "duration", time.Since(start))
	return nil
}

// pushRequest sends one smart HTTP push request for repo to the primary.
func (f *Follower) pushRequest(ctx context.Context, method, repo string, user *gitgate.User, protocol string, body io.Reader) (*http.Response, error) {
	u := f.endpoint("/" + repo + ".git/info/refs")
	if method == http.MethodPost {
		u = f.endpoint("/" + repo + ".git/" + receivePackService)
	} else {
		u.RawQuery = "service=" + receivePackService
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return nil, err
	}
	if err := f.authorize(req, pushClaims(user, repo)); err != nil {
		return nil, err
	}
	if method == http.MethodPost {
		req.Header.Set("Content-Type", "application/x-git-receive-pack-request")
		req.Header.Set("Accept", "application/x-git-receive-pack-result")
	}
	if protocol != "" {
		req.Header.Set("Git-Protocol", protocol)
	}
	return f.client.Do(req)
}

// unreachable is the refusal for a push the primary did not answer.
func (f *Follower) unreachable(ctx context.Context, log *slog.Logger, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	log.Warn("cannot proxy the push to the Geo primary", "err", err)
	return &gitgate.Refusal{Kind: gitgate.RefusedForbidden, Message: PrimaryUnreachableMessage, Cause: err}
}

// primaryRefusal turns the primary's HTTP refusal of a push into a
// *gitgate.Refusal carrying the primary's message.
func (f *Follower) primaryRefusal(resp *http.Response, log *slog.Logger) error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	msg := ""
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt == "text/plain" {
		msg = trimMessage(body)
	}
	cause := fmt.Errorf("the primary answered %s", resp.Status)
	var r *gitgate.Refusal
	switch code := resp.StatusCode; {
	case code == http.StatusUnauthorized:
		log.Error("the Geo primary refused this site's push token: check the node name and shared secret on both sites")
		return &gitgate.Refusal{Kind: gitgate.RefusedForbidden, Message: PrimaryRefusedSiteMessage, Cause: cause}
	case code == http.StatusNotFound:
		r = &gitgate.Refusal{Kind: gitgate.RefusedNotFound, Message: orDefault(msg, gitgate.NotFoundMessage)}
	case code == http.StatusForbidden && msg == gitgate.MaintenanceMessage:
		r = &gitgate.Refusal{Kind: gitgate.RefusedMaintenance, Message: msg}
	case code == http.StatusForbidden && msg == gitgate.StateUnavailableMessage:
		r = &gitgate.Refusal{Kind: gitgate.RefusedStateUnavailable, Message: msg}
	case code >= 400 && code < 500:
		r = &gitgate.Refusal{Kind: gitgate.RefusedForbidden, Message: orDefault(msg, gitgate.PushForbiddenMessage)}
	default:
		log.Warn("the Geo primary failed the push", "status", resp.Status, "body", trimMessage(body))
		return &gitgate.Refusal{Kind: gitgate.RefusedForbidden, Message: PrimaryUnreachableMessage, Cause: cause}
	}
	r.Cause = cause
	log.Info("push refused by the Geo primary", "status", resp.Status, "reason", r.Message)
	return r
}

// orDefault returns a if it is not empty, else b.
func orDefault(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// copyAdvertisement writes a smart HTTP ref advertisement to w as a
// git-receive-pack over SSH would send it: without the leading
// "# service=git-receive-pack" pkt-line and the flush after it.
func copyAdvertisement(w io.Writer, r io.Reader) error {
	first, err := readPktRaw(r)
	if err != nil {
		return fmt.Errorf("read the advertisement: %w", err)
	}
	if string(first) == pktString("# service="+receivePackService+"\n") {
		flush, err := readPktRaw(r)
		if err != nil {
			return fmt.Errorf("read the advertisement: %w", err)
		}
		if string(flush) != "0000" {
			return fmt.Errorf("read the advertisement: no flush after the service line")
		}
	} else if _, err := w.Write(first); err != nil {
		return err
	}
	_, err = io.Copy(w, r)
	return err
}

// pktString encodes s as one pkt-line.
func pktString(s string) string {
	var b strings.Builder
	pktline.NewEncoder(&b).EncodeString(s)
	return b.String()
}

// waitPump waits for the push pump when it has ended or can be made to
// end (stdin supports read deadlines); otherwise it leaves it to end when
// the caller closes stdin.
func waitPump(stdin io.Reader, done <-chan error) error {
	select {
	case err := <-done:
		return err
	default:
	}
	if d, ok := stdin.(interface{ SetReadDeadline(time.Time) error }); ok && d.SetReadDeadline(time.Now()) == nil {
		return <-done
	}
	return nil
}

// Authenticator finds the user behind a request's credentials; it has the
// method set of httpgit.Authenticator, so values convert both ways.
type Authenticator interface {
	Authenticate(r *http.Request) (*gitgate.User, error)
}

// Authenticator returns the primary's authenticator for site tokens: a
// request with "Authorization: GL-Geo ..." is authenticated as the user
// named in its token, if the token is valid, push-scoped, and the request
// is a git-receive-pack request (info/refs or POST) for the token's
// repository; a git-upload-pack request needs a replicate-scoped token
// for its repository and is authenticated as the site, which the policy
// lets read that one repository (gitgate.User.SiteRepo). A Git LFS API
// request (/<repo>.git/info/lfs/...) needs a push-scoped token for its
// repository, as a push does: a secondary sends LFS writes this way. Any
// other request with such a header is refused. Requests
// without it go to next. The primary then applies its own access rules and
// maintenance state to that user.
func (v *Verifier) Authenticator(next Authenticator) Authenticator {
	return &pushAuthenticator{v: v, next: next}
}

type pushAuthenticator struct {
	v    *Verifier
	next Authenticator
}

func (a *pushAuthenticator) Authenticate(r *http.Request) (*gitgate.User, error) {
	h := r.Header.Get("Authorization")
	if !hasScheme(h) {
		return a.next.Authenticate(r)
	}
	if repo, ok := uploadPackRepo(r); ok {
		c, err := a.v.Verify(h, ScopeReplicate, repo)
		if err != nil {
			return nil, fmt.Errorf("GL-Geo replicate token: %w", err)
		}
		return &gitgate.User{Name: "geo-site:" + c.Node, SiteRepo: c.Repo}, nil
	}
	if repo, ok := lfsPathRepo(r); ok {
		c, err := a.v.Verify(h, ScopePush, repo)
		if err != nil {
			return nil, fmt.Errorf("GL-Geo push token (LFS): %w", err)
		}
		return c.PushUser(), nil
	}
	repo, _, ok := receivePackRepo(r)
	if !ok {
		return nil, fmt.Errorf("%w: a GL-Geo token is only accepted for git-receive-pack and git-upload-pack", ErrWrongScope)
	}
	c, err := a.v.Verify(h, ScopePush, repo)
	if err != nil {
		return nil, fmt.Errorf("GL-Geo push token: %w", err)
	}
	return c.PushUser(), nil
}

// trimMessage makes a short, single-paragraph text of a body for users.
func trimMessage(b []byte) string {
	s := strings.ToValidUTF8(strings.TrimSpace(string(b)), "?")
	s = strings.Map(func(r rune) rune {
		if r < ' ' && r != '\n' || r == 0x7f {
			return -1
		}
		return r
	}, s)
	const maxLen = 1024
	if len(s) > maxLen {
		s = strings.ToValidUTF8(s[:maxLen], "") + "..."
	}
	return s
}
