package geo

import (
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/url"
	"time"

	"github.com/gitgate/gitgate/gitgate"
)

// proxyOptions are what differs between the requests a secondary hands to
// its primary: a push (smart HTTP receive-pack) and a Git LFS API request.
type proxyOptions struct {
	// what names the request in logs ("push", "LFS request").
	what string
	// target is the primary's URL for the request.
	target *url.URL
	// headers are the request headers forwarded; the client's
	// credentials are never among them.
	headers []string
	// refuse answers the client in its protocol's error format.
	refuse func(w http.ResponseWriter, status int, msg string)
	// body, when set, replaces the request body (bytes already read by
	// the caller), with its length contentLength (-1: unknown).
	body          io.Reader
	contentLength int64
	// maxAnswer, when positive, bounds the primary's answer relayed.
	maxAnswer int64
	// stream flushes every write to the client and keeps both directions
	// of an HTTP/1 exchange open (the primary answers while the client
	// still sends).
	stream bool
}

// primaryProxy hands one request to the primary, on behalf of user (nil:
// anonymous) for the canonical repository repo: it goes to o.target with
// this site's push token for user and repo in place of the client's
// credentials and only o.headers of the client's; the primary's answer
// reaches the client as it is. The primary decides again with its own
// access rules and maintenance state. If the primary cannot be reached the
// client gets 502 and PrimaryUnreachableMessage; if it refuses this site's
// token (401), 502 and PrimaryRefusedSiteMessage, since relaying its 401
// would make the client drop the user's stored credentials, which are not
// at fault.
func (f *Follower) primaryProxy(w http.ResponseWriter, r *http.Request, user *gitgate.User, repo string, log *slog.Logger, o proxyOptions) {
	token, err := Sign(f.secret, f.node, pushClaims(user, repo), TokenTTL)
	if err != nil {
		log.Error("cannot sign a Geo push token", "err", err)
		o.refuse(w, http.StatusInternalServerError, PrimaryUnreachableMessage)
		return
	}
	start := time.Now()
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL = o.target
			pr.Out.Host = ""
			pr.Out.Header = http.Header{}
			for _, k := range o.headers {
				if v := pr.In.Header.Values(k); len(v) > 0 {
					pr.Out.Header[k] = v
				}
			}
			pr.Out.Header.Set("Authorization", token)
			if o.body != nil {
				pr.Out.Body = io.NopCloser(o.body)
				pr.Out.ContentLength = o.contentLength
			}
			pr.SetXForwarded()
		},
		Transport: f.client.Transport,
		ModifyResponse: func(resp *http.Response) error {
			if resp.StatusCode == http.StatusUnauthorized {
				return errSiteRefused
			}
			if o.maxAnswer > 0 {
				resp.Body = struct {
					io.Reader
					io.Closer
				}{io.LimitReader(resp.Body, o.maxAnswer), resp.Body}
			}
			log.Info(o.what+" proxied to the Geo primary", "status", resp.StatusCode, "duration", time.Since(start))
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if errors.Is(err, errSiteRefused) {
				log.Error("the Geo primary refused this site's push token: check the node name and shared secret on both sites")
				o.refuse(w, http.StatusBadGateway, PrimaryRefusedSiteMessage)
				return
			}
			if r.Context().Err() != nil {
				log.Info(o.what+": the client went away", "err", err)
				return
			}
			log.Warn("cannot proxy the "+o.what+" to the Geo primary", "err", err)
			o.refuse(w, http.StatusBadGateway, PrimaryUnreachableMessage)
		},
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	if o.stream {
		rp.FlushInterval = -1 // flush every write: progress and reports stream
		// The primary may answer (progress, a refusal) while the client is
		// still sending; HTTP/1 needs this to keep both directions open.
		_ = http.NewResponseController(w).EnableFullDuplex()
	}
	rp.ServeHTTP(w, r)
}
