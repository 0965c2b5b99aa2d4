package lfs

import (
	"errors"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/gitgate/gitgate/gitgate"
)

// batchRequest is the batch API's request.
type batchRequest struct {
	Operation string       `json:"operation"`
	Transfers []string     `json:"transfers"`
	Objects   []batchInput `json:"objects"`
	HashAlgo  string       `json:"hash_algo"`
}

type batchInput struct {
	OID  string `json:"oid"`
	Size int64  `json:"size"`
}

type action struct {
	Href      string            `json:"href"`
	Header    map[string]string `json:"header,omitempty"`
	ExpiresIn int               `json:"expires_in,omitempty"`
}

type objectError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

type batchObject struct {
	OID           string             `json:"oid"`
	Size          int64              `json:"size"`
	Authenticated bool               `json:"authenticated,omitempty"`
	Actions       map[string]*action `json:"actions,omitempty"`
	Error         *objectError       `json:"error,omitempty"`
}

// batch answers the batch API: for a download, the objects linked to the
// repository get a download action and the others a 404 error; for an
// upload, the objects not yet linked get upload and verify actions.
func (s *Server) batch(w http.ResponseWriter, r *http.Request, req *request, b *batchRequest) {
	if b.HashAlgo != "" && b.HashAlgo != "sha256" {
		writeError(w, http.StatusConflict, "Only the sha256 hash algorithm is supported.")
		return
	}
	if len(b.Objects) > s.cfg.MaxBatchObjects {
		writeError(w, http.StatusRequestEntityTooLarge, "Too many objects in one batch request (limit "+strconv.Itoa(s.cfg.MaxBatchObjects)+").")
		return
	}
	base := s.repoURL(r, req.op.Repo)
	ttl := int(s.cfg.ActionTTL.Seconds())
	var fromOrigin map[string]int64 // on a Geo secondary: the objects not copied yet
	if b.Operation == "download" {
		fromOrigin = s.originStats(r.Context(), req, b.Objects)
	}
	out := make([]batchObject, 0, len(b.Objects))
	for _, in := range b.Objects {
		o := batchObject{OID: in.OID, Size: in.Size}
		switch {
		case !ValidOID(in.OID):
			o.Error = &objectError{Code: http.StatusUnprocessableEntity, Message: "Invalid object id: it must be 64 lowercase hex digits (SHA-256)."}
		case in.Size < 0:
			o.Error = &objectError{Code: http.StatusUnprocessableEntity, Message: "Invalid object size."}
		case b.Operation == "download":
			size, ok := s.cfg.Store.Stat(req.op.Repo, in.OID)
			if !ok {
				size, ok = fromOrigin[in.OID]
			}
			if !ok || size != in.Size {
				o.Error = &objectError{Code: http.StatusNotFound, Message: objectMissingMessage}
				break
			}
			o.Authenticated = true
			o.Actions = map[string]*action{"download": {Href: base + "/objects/" + in.OID,
				Header: s.grantFor(req, "download", in.OID, in.Size), ExpiresIn: ttl}}
		case in.Size > s.cfg.MaxObjectSize:
			o.Error = &objectError{Code: http.StatusUnprocessableEntity, Message: tooLargeMessage}
		default: // upload
			if size, ok := s.cfg.Store.Stat(req.op.Repo, in.OID); ok && size == in.Size {
				break // already here: nothing to do
			}
			o.Authenticated = true
			o.Actions = map[string]*action{
				"upload": {Href: base + "/objects/" + in.OID, Header: s.grantFor(req, "upload", in.OID, in.Size), ExpiresIn: ttl},
				"verify": {Href: base + "/verify", Header: s.grantFor(req, "upload", "", 0), ExpiresIn: ttl},
			}
		}
		out = append(out, o)
	}
	writeJSON(w, http.StatusOK, map[string]any{"transfer": "basic", "objects": out, "hash_algo": "sha256"})
}

// download streams an object linked to the repository.
func (s *Server) download(w http.ResponseWriter, r *http.Request, req *request, oid string) {
	if g := req.grant; g != nil && g.OID != "" && g.OID != oid {
		writeError(w, http.StatusUnauthorized, badTokenMessage)
		return
	}
	f, size, err := s.cfg.Store.Open(req.op.Repo, oid)
	if err != nil && s.cfg.Origin != nil {
		s.fetchThrough(w, r, req, oid)
		return
	}
	if err != nil {
		// Not linked to this repository is the same answer as missing.
		req.log.Info("lfs object not found", "oid", oid)
		writeError(w, http.StatusNotFound, objectMissingMessage)
		return
	}
	defer f.Close()
	release, err := s.cfg.Limiter.Acquire(req.op)
	if err != nil {
		s.busy(w, req, err)
		return
	}
	defer release()
	end := s.cfg.Tracker.Begin(req.op)
	out, sent := s.beginDownload(w, size)
	defer sent()
	n, err := io.Copy(out, f)
	outcome := gitgate.OutcomeOK
	if err != nil || n != size {
		outcome = gitgate.OutcomeError
		req.log.Warn("lfs download cut short", "oid", oid, "bytes", n, "size", size, "err", err)
	} else {
		s.cfg.Metrics.served(n)
	}
	end(outcome, n)
	req.log.Info("lfs object served", "oid", oid, "bytes", n)
}

// upload stores an object from the request body. The declared size comes
// from the signed action header (the batch request's) or, without one,
// from Content-Length; the body must be exactly that long and hash to the
// oid, or nothing is stored.
func (s *Server) upload(w http.ResponseWriter, r *http.Request, req *request, oid string) {
	size := r.ContentLength
	if g := req.grant; g != nil && g.OID != "" {
		if g.OID != oid {
			writeError(w, http.StatusUnauthorized, badTokenMessage)
			return
		}
		size = g.Size
	}
	switch {
	case size < 0:
		writeError(w, http.StatusLengthRequired, "Content-Length is required.")
		return
	case size > s.cfg.MaxObjectSize:
		writeError(w, http.StatusRequestEntityTooLarge, tooLargeMessage)
		return
	case r.ContentLength >= 0 && r.ContentLength != size:
		writeError(w, http.StatusUnprocessableEntity, badUploadMessage)
		return
	}
	release, err := s.cfg.Limiter.Acquire(req.op)
	if err != nil {
		s.busy(w, req, err)
		return
	}
	defer release()
	end := s.cfg.Tracker.Begin(req.op)
	rc := http.NewResponseController(w)
	defer rc.SetReadDeadline(time.Time{})
	in := &idleReader{r: r.Body, rc: rc, idle: s.cfg.IdleTimeout}
	// The policy again, last: an upload that was still coming in when
	// maintenance began does not become an object (as a push stopped at
	// its ref update).
	commit := func() error { return s.cfg.Policy.Decide(req.op).Err }
	n, err := s.cfg.Store.Put(req.op.Repo, oid, size, in, commit)
	var refusal *gitgate.Refusal
	if errors.As(err, &refusal) {
		end(gitgate.OutcomeOf(refusal), 0)
		s.refuse(w, req, refusal)
		return
	}
	if err != nil {
		end(gitgate.OutcomeError, 0)
		if errors.Is(err, ErrSizeMismatch) || errors.Is(err, ErrHashMismatch) {
			req.log.Warn("lfs upload rejected", "oid", oid, "size", size, "bytes", n, "err", err)
			s.cfg.Metrics.refused(req.op.Service, "bad_object")
			writeError(w, http.StatusUnprocessableEntity, badUploadMessage)
			return
		}
		req.log.Error("lfs upload failed", "oid", oid, "bytes", n, "err", err)
		writeError(w, http.StatusInternalServerError, internalMessage)
		return
	}
	end(gitgate.OutcomeOK, 0)
	s.cfg.Metrics.stored(n)
	if s.cfg.OnStored != nil {
		s.cfg.OnStored(req.op.Repo)
	}
	req.log.Info("lfs object stored", "oid", oid, "bytes", n)
	w.WriteHeader(http.StatusOK)
}

// verify confirms that an uploaded object is stored and linked.
func (s *Server) verify(w http.ResponseWriter, req *request, in *lockRequest) {
	size, ok := s.cfg.Store.Stat(req.op.Repo, in.OID)
	if !ok || size != in.Size {
		writeError(w, http.StatusNotFound, objectMissingMessage)
		return
	}
	writeJSON(w, http.StatusOK, struct{}{})
}

// busy answers a transfer over the gate's limits.
func (s *Server) busy(w http.ResponseWriter, req *request, err error) {
	var r *gitgate.Refusal
	if errors.As(err, &r) {
		s.refuse(w, req, r)
		return
	}
	req.log.Error("lfs limiter", "err", err)
	writeError(w, http.StatusServiceUnavailable, internalMessage)
}

// idleReader reads a request body, each read bounded by an idle deadline.
type idleReader struct {
	r    io.Reader
	rc   *http.ResponseController
	idle time.Duration
}

func (i *idleReader) Read(p []byte) (int, error) {
	_ = i.rc.SetReadDeadline(time.Now().Add(i.idle))
	return i.r.Read(p)
}

// idleWriter writes a response, each write bounded by an idle deadline.
type idleWriter struct {
	w    io.Writer
	rc   *http.ResponseController
	idle time.Duration
}

func (i *idleWriter) Write(p []byte) (int, error) {
	_ = i.rc.SetWriteDeadline(time.Now().Add(i.idle))
	return i.w.Write(p)
}

// beginDownload answers 200 for an object of size bytes, and returns the
// writer that sends its bytes (each write bounded by the idle timeout) and
// the function to call once they are sent.
func (s *Server) beginDownload(w http.ResponseWriter, size int64) (out *idleWriter, sent func()) {
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Length", strconv.FormatInt(size, 10))
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	return &idleWriter{w: w, rc: rc, idle: s.cfg.IdleTimeout}, func() { rc.SetWriteDeadline(time.Time{}) }
}
