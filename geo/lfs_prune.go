package geo

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/gitgate/gitgate/lfs"
)

// pruneLFS unlinks from repo the objects the primary's listing (asked for
// at asked) no longer links to it, so that this site stops serving them
// when the primary does. Links made since asked are kept: an object
// fetched from the primary meanwhile is newer than the listing.
func (r *Replicator) pruneLFS(repo string, listed []lfs.Object, asked time.Time) {
	keep := make(map[string]bool, len(listed))
	for _, o := range listed {
		keep[o.OID] = true
	}
	gone, err := r.opts.LFS.Prune(repo, func(oid string) bool { return keep[oid] }, asked)
	if err != nil {
		r.log.Warn("cannot unlink LFS objects removed on the Geo primary", "repo", repo, "err", err)
	}
	for _, oid := range gone {
		r.log.Info("LFS object no longer linked on the Geo primary: unlinked here", "repo", repo, "oid", oid)
	}
}

// sweepLFS moves the LFS objects no repository of this site links to the
// store's trash, and deletes those trashed for the trash retention, as
// removed repositories are.
func (r *Replicator) sweepLFS(ctx context.Context) {
	if r.opts.LFS == nil {
		return
	}
	local, err := r.opts.Resolver.List(ctx)
	if err != nil {
		return
	}
	names := make([]string, len(local))
	for i, repo := range local {
		names[i] = repo.Name
	}
	res, err := r.opts.LFS.Sweep(names, r.opts.TrashRetention, r.now())
	if err != nil {
		r.log.Warn("cannot sweep unlinked LFS objects", "err", err)
	}
	if res != (lfs.SweepResult{}) {
		r.log.Info("LFS objects swept", "trashed", res.Trashed, "restored", res.Restored, "removed", res.Removed,
			"retention", r.opts.TrashRetention)
	}
}

// LFSOrigin returns the primary as the origin of the LFS objects this
// site has not copied yet ([lfs.Config.Origin]): asked with this site's
// replicate token for the one repository, bound by the fetch timeout.
func (r *Replicator) LFSOrigin() lfs.Origin { return lfsOrigin{r} }

type lfsOrigin struct{ r *Replicator }

func (o lfsOrigin) StatObject(ctx context.Context, repo, oid string) (int64, error) {
	resp, err := o.r.requestReplicate(ctx, http.MethodHead, LFSObjectPath, repo, url.Values{"repo": {repo}, "oid": {oid}})
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	if resp.ContentLength < 0 {
		return 0, fmt.Errorf("%s: no Content-Length", LFSObjectPath)
	}
	return resp.ContentLength, nil
}

func (o lfsOrigin) OpenObject(ctx context.Context, repo, oid string) (io.ReadCloser, int64, error) {
	resp, err := o.r.requestReplicate(ctx, http.MethodGet, LFSObjectPath, repo, url.Values{"repo": {repo}, "oid": {oid}})
	if err != nil {
		return nil, 0, err
	}
	if resp.ContentLength < 0 {
		resp.Body.Close()
		return nil, 0, fmt.Errorf("%s: no Content-Length", LFSObjectPath)
	}
	return resp.Body, resp.ContentLength, nil
}
