package httpgit

import (
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/gitgate/gitgate/gitgate"
)

// Defaults for the body limits of [Config].
const (
	// DefaultMaxRequestBody bounds the body of a fetch (upload-pack)
	// request after decompression: its wants, haves and options.
	DefaultMaxRequestBody = 32 << 20
	// DefaultMaxInflatedBody bounds any gzip-compressed body after
	// decompression, pushes included (git does not compress a push's pack,
	// so this only ever stops other clients).
	DefaultMaxInflatedBody = 2 << 30
	// DefaultBodyIdleTimeout ends a request whose client has sent nothing
	// (or read nothing of the answer) for this long.
	DefaultBodyIdleTimeout = 60 * time.Second
)

// What a refused push's body may cost before the refusal is sent anyway
// (and the connection closed): the commands are read to name the refused
// refs, the pack that follows is discarded so that the client reads the
// answer instead of a reset connection.
const (
	refusedBodyMax  = 16 << 20
	refusedBodyTime = 30 * time.Second
	// reportRefsMax bounds the refs named in the refusal's report; git
	// shows refs beyond it as "remote failed to report status".
	reportRefsMax = 1000
)

// Errors of a request body, all the client's doing: they answer 4xx.
var (
	errBodyTooLarge = errors.New("request body too large")
	errBodyIdle     = errors.New("request body idle")
	errBodyStopped  = errors.New("request body no longer read")
)

// body is a request body as git gets it: decompressed if the client sent it
// with gzip (git does for large fetch negotiations), cut at a limit on its
// decompressed size, and read under a deadline that every read moves
// forward (the idle timeout) but never past an overall deadline, if any.
// It remembers the first error that was the client's fault.
type body struct {
	raw      io.ReadCloser
	gzipped  bool
	rc       *http.ResponseController
	limit    int64         // on decompressed bytes; negative: none
	idle     time.Duration // <= 0: none
	deadline time.Time     // zero: none

	zr           *gzip.Reader // created on the first read
	n            int64        // decompressed bytes read
	readDeadline time.Time    // of the read in progress

	mu      sync.Mutex
	err     error // first client error
	stopped bool
	eof     bool
}

// newBody prepares the body of r, answered by w, for reading with the
// server's limits; limit bounds its decompressed size (negative: only the
// inflated-body cap). It reads nothing.
func (s *Server) newBody(w http.ResponseWriter, r *http.Request, limit int64) (*body, error) {
	b := &body{raw: r.Body, rc: http.NewResponseController(w), limit: limit, idle: s.cfg.BodyIdleTimeout}
	switch enc := r.Header.Get("Content-Encoding"); enc {
	case "", "identity":
	case "gzip", "x-gzip":
		b.gzipped = true
		if max := s.cfg.MaxInflatedBody; max >= 0 && (b.limit < 0 || max < b.limit) {
			b.limit = max
		}
	default:
		return nil, fmt.Errorf("unsupported Content-Encoding %q", enc)
	}
	return b, nil
}

// Read reads decompressed bytes, failing with errBodyTooLarge past the limit
// and errBodyIdle when the client sent nothing for the idle timeout.
func (b *body) Read(p []byte) (int, error) {
	if err := b.failed(); err != nil {
		return 0, err
	}
	if d := b.nextDeadline(); !d.IsZero() {
		b.rc.SetReadDeadline(d)
		b.readDeadline = d
	}
	if b.gzipped && b.zr == nil {
		zr, err := gzip.NewReader(b.raw)
		if err != nil {
			return 0, b.fail(fmt.Errorf("gzip body: %w", err))
		}
		b.zr = zr
	}
	var src io.Reader = b.raw
	if b.zr != nil {
		src = b.zr
	}
	if b.limit >= 0 && int64(len(p)) > b.limit-b.n+1 {
		p = p[:b.limit-b.n+1] // one byte more shows a body over the limit
	}
	n, err := src.Read(p)
	b.n += int64(n)
	if b.limit >= 0 && b.n > b.limit {
		return n - int(b.n-b.limit), b.fail(errBodyTooLarge)
	}
	switch {
	case err == io.EOF:
		b.mu.Lock()
		b.eof = true
		b.mu.Unlock()
		// net/http now reads in the background to notice a hangup: an
		// expired deadline there would cancel the request.
		b.rc.SetReadDeadline(time.Time{})
	case err != nil:
		return n, b.fail(err)
	}
	return n, err
}

// nextDeadline is the deadline for the next read.
func (b *body) nextDeadline() time.Time {
	d := b.deadline
	if b.idle > 0 {
		if next := time.Now().Add(b.idle); d.IsZero() || next.Before(d) {
			d = next
		}
	}
	return d
}

// fail records err, classified, as the body's error unless one was
// recorded already or the body was stopped, and returns it.
func (b *body) fail(err error) error {
	// A read that outlived its deadline was the client's doing even if
	// the body was stopped meanwhile (net/http cancels the request, and so
	// git, as soon as the connection's read fails).
	idle := errors.Is(err, os.ErrDeadlineExceeded) && !b.readDeadline.IsZero() && !time.Now().Before(b.readDeadline)
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.stopped && !idle {
		return errBodyStopped
	}
	if b.err == nil {
		if errors.Is(err, errBodyTooLarge) {
			b.err = err
		} else if idle || errors.Is(err, os.ErrDeadlineExceeded) {
			b.err = fmt.Errorf("%w: %w", errBodyIdle, err)
		} else {
			b.err = fmt.Errorf("read request body: %w", err)
		}
	}
	return b.err
}

func (b *body) failed() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.stopped {
		return errBodyStopped
	}
	return b.err
}

// Err returns the client's error that ended the body, if any.
func (b *body) Err() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err
}

// stop ends a Read in progress and fails those to come; errors from then on
// are not the client's.
func (b *body) stop() {
	b.mu.Lock()
	b.stopped = true
	eof := b.eof
	b.mu.Unlock()
	if !eof {
		b.rc.SetReadDeadline(time.Now())
	}
}

// Close releases the decompressor; the server closes the request body.
func (b *body) Close() error {
	if b.zr != nil {
		return b.zr.Close()
	}
	return nil
}

// bodyStatus is the HTTP answer for a body error: 413 over a limit, 408
// when the client stopped sending, else 400 (malformed chunked encoding,
// corrupt gzip, a body cut short).
func bodyStatus(err error) int {
	switch {
	case errors.Is(err, errBodyTooLarge):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, errBodyIdle):
		return http.StatusRequestTimeout
	}
	return http.StatusBadRequest
}

// bodyLimit is the decompressed size a service's request body may have.
func (s *Server) bodyLimit(svc gitgate.Service) int64 {
	if svc == gitgate.ReceivePack {
		return -1 // the pack; gzip is capped by MaxInflatedBody
	}
	return s.cfg.MaxRequestBody
}
