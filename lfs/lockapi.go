package lfs

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/gitgate/gitgate/gitgate"
)

// lockRequest is the body of every POST but the batch: lock create (path),
// unlock (force), lock verify, and object verify (oid, size).
type lockRequest struct {
	Path  string `json:"path"`
	Force bool   `json:"force"`
	OID   string `json:"oid"`
	Size  int64  `json:"size"`
	Limit int    `json:"limit"`
	Ref   *struct {
		Name string `json:"name"`
	} `json:"ref"`
}

// listLocks answers GET locks, filtered by path or id.
func (s *Server) listLocks(w http.ResponseWriter, r *http.Request, req *request) {
	locks, err := s.cfg.Locks.List(req.op.Repo)
	if err != nil {
		s.lockFailed(w, req, err)
		return
	}
	q := r.URL.Query()
	out := make([]Lock, 0, len(locks))
	for _, lk := range locks {
		if p := q.Get("path"); p != "" && lk.Path != p {
			continue
		}
		if id := q.Get("id"); id != "" && lk.ID != id {
			continue
		}
		out = append(out, lk)
	}
	if n, err := strconv.Atoi(q.Get("limit")); err == nil && n > 0 && n < len(out) {
		out = out[:n]
	}
	writeJSON(w, http.StatusOK, map[string]any{"locks": out})
}

// createLock answers POST locks.
func (s *Server) createLock(w http.ResponseWriter, req *request, in *lockRequest) {
	if req.op.User == nil {
		s.refuse(w, req, gitgate.ErrAnonymousPush)
		return
	}
	lk, err := s.cfg.Locks.Create(req.op.Repo, in.Path, req.op.User.Name)
	switch {
	case errors.Is(err, ErrLockExists):
		writeJSON(w, http.StatusConflict, map[string]any{"lock": lk, "message": lockExistsMessage})
	case errors.Is(err, ErrBadLockPath):
		writeError(w, http.StatusUnprocessableEntity, "Invalid lock path.")
	case errors.Is(err, ErrTooManyLocks):
		writeError(w, http.StatusUnprocessableEntity, "Too many locks in this repository.")
	case err != nil:
		s.lockFailed(w, req, err)
	default:
		req.log.Info("lfs lock created", "path", lk.Path, "id", lk.ID)
		writeJSON(w, http.StatusCreated, map[string]any{"lock": lk})
	}
}

// verifyLocks answers POST locks/verify: the locks split into the user's
// own and everyone else's.
func (s *Server) verifyLocks(w http.ResponseWriter, req *request) {
	locks, err := s.cfg.Locks.List(req.op.Repo)
	if err != nil {
		s.lockFailed(w, req, err)
		return
	}
	ours, theirs := []Lock{}, []Lock{}
	for _, lk := range locks {
		if req.op.User != nil && lk.Owner.Name == req.op.User.Name {
			ours = append(ours, lk)
		} else {
			theirs = append(theirs, lk)
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"ours": ours, "theirs": theirs})
}

// unlock answers POST locks/<id>/unlock. Only the lock's owner may unlock
// it; force unlocks another user's lock and is for administrators.
func (s *Server) unlock(w http.ResponseWriter, req *request, id string, in *lockRequest) {
	if req.op.User == nil {
		s.refuse(w, req, gitgate.ErrAnonymousPush)
		return
	}
	force := in.Force && req.op.User.Admin
	lk, err := s.cfg.Locks.Delete(req.op.Repo, id, req.op.User.Name, force)
	switch {
	case errors.Is(err, ErrLockNotFound):
		writeError(w, http.StatusNotFound, lockNotFoundMessage)
	case errors.Is(err, ErrNotLockOwner):
		writeError(w, http.StatusForbidden, notLockOwnerMessage)
	case err != nil:
		s.lockFailed(w, req, err)
	default:
		req.log.Info("lfs lock deleted", "path", lk.Path, "id", lk.ID, "force", force)
		writeJSON(w, http.StatusOK, map[string]any{"lock": lk})
	}
}

func (s *Server) lockFailed(w http.ResponseWriter, req *request, err error) {
	req.log.Error("lfs locks", "err", err)
	writeError(w, http.StatusInternalServerError, internalMessage)
}
