package lfs

import (
	"context"
	"io"
	"net/http"
	"time"

	"github.com/gitgate/gitgate/gitgate"
)

// Origin is where a Geo secondary gets the objects it has not copied yet:
// its primary, asked with the site's replication token for the one
// repository. Both methods return an error for an object the origin does
// not link to repo.
type Origin interface {
	// StatObject returns the size of oid as the origin links it to repo.
	StatObject(ctx context.Context, repo, oid string) (int64, error)
	// OpenObject opens oid as the origin links it to repo, with its size;
	// the caller closes it.
	OpenObject(ctx context.Context, repo, oid string) (io.ReadCloser, int64, error)
}

// Bounds of the origin lookups of one batch request.
const (
	maxOriginStats    = 100              // missing objects looked up per batch
	originStatTimeout = 30 * time.Second // for all of them together
)

// originStats looks up, on the origin, the objects of a download batch that
// are not here; it returns their sizes by oid. The others stay missing.
func (s *Server) originStats(ctx context.Context, req *request, objs []batchInput) map[string]int64 {
	if s.cfg.Origin == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, originStatTimeout)
	defer cancel()
	found := map[string]int64{}
	asked := 0
	for _, in := range objs {
		if asked == maxOriginStats || ctx.Err() != nil {
			break
		}
		if !ValidOID(in.OID) || in.Size < 0 {
			continue
		}
		if _, ok := s.cfg.Store.Stat(req.op.Repo, in.OID); ok {
			continue
		}
		asked++
		size, err := s.cfg.Origin.StatObject(ctx, req.op.Repo, in.OID)
		if err != nil {
			req.log.Info("lfs object not here and not on the Geo primary", "oid", in.OID, "err", err)
			continue
		}
		found[in.OID] = size
	}
	return found
}

// fetchThrough serves an object this site has not copied yet from the
// origin: the bytes stream to the client and into the store at once, and
// become an object here only when their size and SHA-256 match the oid
// (as every copy does). A client that goes away, or a wrong copy, stores
// nothing; a wrong copy has reached the client, whose git-lfs checks the
// oid itself and rejects it, and the connection is cut short if it ends
// early. It answers 404 when the origin does not have the object.
func (s *Server) fetchThrough(w http.ResponseWriter, r *http.Request, req *request, oid string) {
	body, size, err := s.cfg.Origin.OpenObject(r.Context(), req.op.Repo, oid)
	if err != nil {
		req.log.Info("lfs object not found here nor on the Geo primary", "oid", oid, "err", err)
		writeError(w, http.StatusNotFound, objectMissingMessage)
		return
	}
	defer body.Close()
	if size > s.cfg.MaxObjectSize {
		req.log.Warn("lfs object on the Geo primary is larger than this site accepts", "oid", oid, "size", size)
		writeError(w, http.StatusNotFound, objectMissingMessage)
		return
	}
	release, err := s.cfg.Limiter.Acquire(req.op)
	if err != nil {
		s.busy(w, req, err)
		return
	}
	defer release()
	end := s.cfg.Tracker.Begin(req.op)
	out, sent := s.beginDownload(w, size)
	defer sent()
	n, err := s.cfg.Store.Put(req.op.Repo, oid, size, io.TeeReader(body, out), nil)
	if err != nil {
		end(gitgate.OutcomeError, n)
		req.log.Warn("lfs object from the Geo primary not stored", "oid", oid, "bytes", n, "size", size, "err", err)
		return
	}
	end(gitgate.OutcomeOK, n)
	s.cfg.Metrics.served(n)
	req.log.Info("lfs object fetched from the Geo primary and served", "oid", oid, "bytes", n)
}
