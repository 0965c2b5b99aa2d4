package lfs

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"

	"github.com/gitgate/gitgate/gitgate"
)

// ErrTransferUnavailable is returned by [Server.SSHTransfer] where the
// pure-SSH protocol is not served; see [Server.TransferAvailable].
var ErrTransferUnavailable = errors.New("git-lfs-transfer is not served here; use git-lfs-authenticate")

// TransferAvailable reports whether this server serves git-lfs-transfer:
// not on a Geo secondary, whose LFS writes go to the primary over HTTP.
// Where it does not, the SSH server refuses the command as unknown, and
// git-lfs falls back to git-lfs-authenticate and the HTTP API.
func (s *Server) TransferAvailable() bool { return s.cfg.Primary == nil }

// Bounds of the git-lfs-transfer protocol, besides the server's own.
const (
	maxPktPayload = 65516 // a pkt-line's payload: 65520 bytes less its length
	// maxTransferArgs bounds the argument lines of one command.
	maxTransferArgs = 64
)

// Errors of the git-lfs-transfer protocol that end a session.
var (
	errPktLine      = errors.New("git-lfs-transfer: malformed pkt-line")
	errTooLong      = errors.New("git-lfs-transfer: command too long")
	errNotOurObject = errors.New("git-lfs-transfer: object data longer than its size")
)

// pkt kinds besides data.
const (
	pktData = iota
	pktFlush
	pktDelim
)

// pktConn reads and writes pkt-lines (gitprotocol-common(5)) for one
// git-lfs-transfer session.
type pktConn struct {
	r   *bufio.Reader
	w   *bufio.Writer
	buf [maxPktPayload]byte
}

// read returns the next packet: its kind and, for data, its payload (valid
// until the next read).
func (c *pktConn) read() (int, []byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(c.r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n, err := strconv.ParseUint(string(hdr[:]), 16, 16)
	switch {
	case err != nil:
		return 0, nil, errPktLine
	case n == 0:
		return pktFlush, nil, nil
	case n == 1:
		return pktDelim, nil, nil
	case n < 4 || n-4 > maxPktPayload:
		return 0, nil, errPktLine
	}
	p := c.buf[:n-4]
	if _, err := io.ReadFull(c.r, p); err != nil {
		return 0, nil, err
	}
	return pktData, p, nil
}

// readText reads packets up to a flush or delim, as text lines without
// their LF; it answers which ended them. More than max lines, or more than
// maxBytes of them in all, is an error.
func (c *pktConn) readText(max int, maxBytes int64) ([]string, int, error) {
	var lines []string
	var total int64
	for {
		kind, p, err := c.read()
		if err != nil {
			return nil, 0, err
		}
		if kind != pktData {
			return lines, kind, nil
		}
		if total += int64(len(p)); len(lines) == max || total > maxBytes {
			return nil, 0, errTooLong
		}
		lines = append(lines, strings.TrimSuffix(string(p), "\n"))
	}
}

func (c *pktConn) text(s string) {
	fmt.Fprintf(c.w, "%04x%s\n", len(s)+5, s)
}

// status writes a whole answer: status, arguments, and, when lines is not
// nil, a delim and the lines; then a flush, sent at once.
func (c *pktConn) status(code int, args []string, lines []string) error {
	c.text("status " + strconv.Itoa(code))
	for _, a := range args {
		c.text(a)
	}
	if lines != nil {
		c.w.WriteString("0001")
		for _, l := range lines {
			c.text(l)
		}
	}
	c.w.WriteString("0000")
	return c.w.Flush()
}

// dataWriter writes binary data as pkt-lines.
type dataWriter struct{ c *pktConn }

func (d dataWriter) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		chunk := p[:min(len(p), maxPktPayload)]
		fmt.Fprintf(d.c.w, "%04x", len(chunk)+4)
		if _, err := d.c.w.Write(chunk); err != nil {
			return n, err
		}
		n += len(chunk)
		p = p[len(chunk):]
	}
	return n, nil
}

// dataReader reads binary pkt-lines up to the flush that ends them.
type dataReader struct {
	c    *pktConn
	rest []byte
	done bool
}

func (d *dataReader) Read(p []byte) (int, error) {
	for len(d.rest) == 0 {
		if d.done {
			return 0, io.EOF
		}
		kind, payload, err := d.c.read()
		switch {
		case err != nil:
			return 0, err
		case kind == pktFlush:
			d.done = true
		case kind == pktDelim:
			return 0, errPktLine
		default:
			d.rest = payload
		}
	}
	n := copy(p, d.rest)
	d.rest = d.rest[n:]
	return n, nil
}

// drain reads what is left of the data, no more than limit bytes.
func (d *dataReader) drain(limit int64) error {
	n, err := io.Copy(io.Discard, io.LimitReader(d, limit+1))
	if err == nil && n > limit {
		return errNotOurObject
	}
	return err
}

// transferSession is one git-lfs-transfer session: one user, one
// repository (canonical), one operation.
type transferSession struct {
	s         *Server
	ctx       context.Context
	op        gitgate.Operation // Service LFSDownload; the writes set their own
	operation string
	c         *pktConn
	log       *slog.Logger
}

// SSHTransfer serves one git-lfs-transfer session (the pure-SSH protocol
// of git-lfs's docs/proposals/ssh_adapter.md) for op (User set, Repo as the
// client sent it) and operation ("upload" or "download") on stdin and
// stdout. It resolves and decides as every door does: the session needs
// read access; each upload, object verify and lock change is decided again
// when it comes, with the maintenance state of that moment, and refused
// with the policy's message (status 403) before any object byte is
// stored; every command checks again that the user's credential is still
// valid. Objects go through the same [Store], limits and metrics as over
// HTTP. The error is a *gitgate.Refusal when the session is refused before
// it starts, [ErrTransferUnavailable] on a Geo secondary.
func (s *Server) SSHTransfer(ctx context.Context, op *gitgate.Operation, operation string, stdin io.Reader, stdout io.Writer) error {
	if operation != "download" && operation != "upload" {
		return fmt.Errorf("lfs: unknown operation %q", operation)
	}
	if s.cfg.Primary != nil {
		return ErrTransferUnavailable
	}
	op.Service = gitgate.LFSDownload
	_, d := s.cfg.Policy.Open(ctx, s.cfg.Resolver, op)
	if r := d.Refusal(); r != nil {
		s.cfg.Tracker.Refused(*op, r)
		s.cfg.Metrics.refused(op.Service, refusalReason(r))
		return r
	}
	t := &transferSession{s: s, ctx: ctx, op: *op, operation: operation,
		c: &pktConn{r: bufio.NewReaderSize(stdin, 64<<10), w: bufio.NewWriterSize(stdout, 64<<10)},
		log: s.cfg.Log.With("transport", gitgate.TransportSSH, "repo", op.Repo, "user", op.User.String(),
			"remote_addr", op.RemoteAddr, "lfs", "transfer "+operation)}
	t.c.text("version=1")
	t.c.text("locking")
	t.c.w.WriteString("0000")
	if err := t.c.w.Flush(); err != nil {
		return err
	}
	return t.serve()
}

// serve reads and answers commands until quit or the end of input.
func (t *transferSession) serve() error {
	for {
		if err := t.ctx.Err(); err != nil {
			return err
		}
		kind, p, err := t.c.read()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if kind != pktData {
			continue // a stray flush or delim
		}
		cmd, arg, _ := strings.Cut(strings.TrimSuffix(string(p), "\n"), " ")
		if cmd == "quit" {
			if _, _, err := t.c.readText(maxTransferArgs, t.s.cfg.MaxBatchBody); err != nil {
				return err
			}
			return t.c.status(200, nil, nil)
		}
		if err := t.command(cmd, arg); err != nil {
			return err
		}
	}
}

// command answers one command, cmd with its argument on the command line;
// an error ends the session.
func (t *transferSession) command(cmd, arg string) error {
	// The arguments: up to a flush, or up to a delim for the commands
	// that send lines or data after it; bounded in bytes as a request's
	// body is over HTTP.
	args, end, err := t.c.readText(maxTransferArgs, t.s.cfg.MaxBatchBody)
	if err != nil {
		return err
	}
	kv := map[string]string{}
	for _, a := range args {
		k, v, _ := strings.Cut(a, "=")
		kv[k] = v
	}
	if r := t.stillSignedIn(); r != nil {
		if end == pktDelim {
			return r // what follows cannot be skipped safely
		}
		return t.refuse(r)
	}
	switch {
	case cmd == "version" && end == pktFlush:
		if arg != "1" {
			return t.c.status(400, nil, []string{"unsupported version"})
		}
		return t.c.status(200, nil, nil)
	case cmd == "batch" && end == pktDelim:
		return t.batch(kv)
	case cmd == "put-object" && end == pktDelim:
		return t.putObject(arg, kv)
	case cmd == "verify-object" && end == pktFlush:
		return t.verifyObject(arg, kv)
	case cmd == "get-object" && end == pktFlush:
		return t.getObject(arg)
	case cmd == "lock" && end == pktFlush:
		return t.lock(kv)
	case (cmd == "list-lock" || cmd == "list-locks") && end == pktFlush:
		return t.listLocks(kv, cmd == "list-locks")
	case cmd == "unlock" && end == pktFlush:
		return t.unlock(arg, kv)
	case end == pktDelim:
		return errPktLine // lines or data of a command we do not know
	}
	return t.c.status(400, nil, []string{"Unknown command."})
}

// stillSignedIn checks the user's credential against the live access data
// (as a signed header's is on every use), so that a session outlives no
// removed key or user.
func (t *transferSession) stillSignedIn() *gitgate.Refusal {
	u := t.op.User
	if u == nil {
		return nil
	}
	if _, err := t.s.cfg.Users.UserByCredential(u.Name, u.Credential); err != nil {
		t.log.Warn("lfs transfer: the credential of the session is no longer valid", "err", err)
		return &gitgate.Refusal{Kind: gitgate.RefusedUnauthenticated, Message: badTokenMessage, Cause: err}
	}
	return nil
}

// decide asks the policy for svc on the session's repository now.
func (t *transferSession) decide(svc gitgate.Service) (gitgate.Operation, *gitgate.Refusal) {
	op := t.op
	op.Service = svc
	if r := t.s.cfg.Policy.Decide(op).Refusal(); r != nil {
		t.s.cfg.Tracker.Refused(op, r)
		t.s.cfg.Metrics.refused(svc, refusalReason(r))
		t.log.Info("lfs operation refused", "service", string(svc), "reason", r.Message, "cause", r.Cause)
		return op, r
	}
	return op, nil
}

// refuse answers a refusal: its status as over HTTP, its message as the
// error line git-lfs shows.
func (t *transferSession) refuse(r *gitgate.Refusal) error {
	status := 403
	switch r.Kind {
	case gitgate.RefusedUnauthenticated:
		status = 401
	case gitgate.RefusedNotFound:
		status = 404
	case gitgate.RefusedBusy:
		status = 429
	}
	return t.c.status(status, nil, []string{r.Message})
}

// batch answers the batch command: one line per object with its action.
func (t *transferSession) batch(kv map[string]string) error {
	lines, end, err := t.c.readText(t.s.cfg.MaxBatchObjects+1, t.s.cfg.MaxBatchBody)
	if errors.Is(err, errTooLong) {
		return err
	}
	if err != nil || end != pktFlush {
		return errPktLine
	}
	if len(lines) > t.s.cfg.MaxBatchObjects {
		return t.c.status(413, nil, []string{"Too many objects in one batch request (limit " + strconv.Itoa(t.s.cfg.MaxBatchObjects) + ")."})
	}
	if h := kv["hash-algo"]; h != "" && h != "sha256" {
		return t.c.status(409, nil, []string{"Only the sha256 hash algorithm is supported."})
	}
	if t.operation == "upload" {
		if _, r := t.decide(gitgate.LFSUpload); r != nil {
			return t.refuse(r)
		}
	}
	out := make([]string, 0, len(lines))
	for _, line := range lines {
		f := strings.Fields(line)
		if len(f) < 2 {
			return t.c.status(422, nil, []string{badRequestMessage})
		}
		oid := f[0]
		size, err := strconv.ParseInt(f[1], 10, 64)
		if !ValidOID(oid) || err != nil || size < 0 {
			return t.c.status(422, nil, []string{"Invalid object id or size: the id must be 64 lowercase hex digits (SHA-256)."})
		}
		have, ok := t.s.cfg.Store.Stat(t.op.Repo, oid)
		here := ok && have == size
		action := "noop"
		switch {
		case t.operation == "download" && here:
			action = "download"
		case t.operation == "upload" && size > t.s.cfg.MaxObjectSize:
			return t.c.status(422, nil, []string{tooLargeMessage})
		case t.operation == "upload" && !here:
			action = "upload"
		}
		out = append(out, oid+" "+strconv.FormatInt(size, 10)+" "+action)
	}
	return t.c.status(200, []string{"hash-algo=sha256"}, out)
}

// sizeArg is the size=N argument.
func sizeArg(kv map[string]string) (int64, bool) {
	n, err := strconv.ParseInt(kv["size"], 10, 64)
	return n, err == nil && n >= 0
}

// putObject stores an object from the data that follows: decided first,
// then streamed into the store, which checks its oid and size; the policy
// is asked again before it becomes an object.
func (t *transferSession) putObject(oid string, kv map[string]string) error {
	data := &dataReader{c: t.c}
	size, ok := sizeArg(kv)
	if !ValidOID(oid) || !ok {
		return errPktLine
	}
	op, r := t.decide(gitgate.LFSUpload)
	if r == nil && t.operation != "upload" {
		r = &gitgate.Refusal{Kind: gitgate.RefusedForbidden, Message: "Uploads need a git-lfs-transfer session for upload."}
	}
	if r == nil && size > t.s.cfg.MaxObjectSize {
		r = &gitgate.Refusal{Kind: gitgate.RefusedForbidden, Message: tooLargeMessage}
	}
	if r != nil {
		// Nothing is stored; the data is read past to keep the session
		// (no more than an object may hold: past that, the session ends).
		if err := data.drain(min(size, t.s.cfg.MaxObjectSize)); err != nil {
			return err
		}
		return t.refuse(r)
	}
	release, err := t.s.cfg.Limiter.Acquire(op)
	if err != nil {
		var busy *gitgate.Refusal
		if errors.As(err, &busy) {
			if err := data.drain(size); err != nil {
				return err
			}
			return t.refuse(busy)
		}
		return err
	}
	defer release()
	end := t.s.cfg.Tracker.Begin(op)
	commit := func() error { return t.s.cfg.Policy.Decide(op).Err }
	n, err := t.s.cfg.Store.Put(op.Repo, oid, size, data, commit)
	if derr := data.drain(0); derr != nil && err == nil {
		err = derr
	}
	var refusal *gitgate.Refusal
	switch {
	case errors.As(err, &refusal):
		end(gitgate.OutcomeOf(refusal), 0)
		if derr := data.drain(size); derr != nil {
			return derr
		}
		return t.refuse(refusal)
	case errors.Is(err, ErrSizeMismatch), errors.Is(err, ErrHashMismatch), errors.Is(err, errNotOurObject):
		end(gitgate.OutcomeError, 0)
		t.log.Warn("lfs upload rejected", "oid", oid, "size", size, "bytes", n, "err", err)
		t.s.cfg.Metrics.refused(op.Service, "bad_object")
		if derr := data.drain(0); derr != nil {
			return derr // more than declared: the session cannot go on
		}
		return t.c.status(422, nil, []string{badUploadMessage})
	case err != nil:
		end(gitgate.OutcomeError, 0)
		return fmt.Errorf("lfs transfer: store %s: %w", oid, err)
	}
	end(gitgate.OutcomeOK, 0)
	t.s.cfg.Metrics.stored(n)
	if t.s.cfg.OnStored != nil {
		t.s.cfg.OnStored(op.Repo)
	}
	t.log.Info("lfs object stored", "oid", oid, "bytes", n)
	return t.c.status(200, nil, []string{})
}

// verifyObject confirms that an uploaded object is stored and linked.
func (t *transferSession) verifyObject(arg string, kv map[string]string) error {
	oid, sz, hasSize := strings.Cut(arg, " ")
	size, ok := sizeArg(kv)
	if hasSize {
		n, err := strconv.ParseInt(sz, 10, 64)
		size, ok = n, err == nil
	}
	if _, r := t.decide(gitgate.LFSUpload); r != nil {
		return t.refuse(r)
	}
	if have, found := t.s.cfg.Store.Stat(t.op.Repo, oid); !ok || !found || have != size {
		return t.c.status(404, nil, []string{objectMissingMessage})
	}
	return t.c.status(200, nil, nil)
}

// getObject streams an object linked to the repository.
func (t *transferSession) getObject(oid string) error {
	f, size, err := t.s.cfg.Store.Open(t.op.Repo, oid)
	if err != nil {
		t.log.Info("lfs object not found", "oid", oid)
		return t.c.status(404, nil, []string{objectMissingMessage})
	}
	defer f.Close()
	release, err := t.s.cfg.Limiter.Acquire(t.op)
	if err != nil {
		var busy *gitgate.Refusal
		if errors.As(err, &busy) {
			return t.refuse(busy)
		}
		return err
	}
	defer release()
	end := t.s.cfg.Tracker.Begin(t.op)
	t.c.text("status 200")
	t.c.text("size=" + strconv.FormatInt(size, 10))
	t.c.w.WriteString("0001")
	n, err := io.Copy(dataWriter{t.c}, io.LimitReader(f, size))
	if err == nil && n != size {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		end(gitgate.OutcomeError, n)
		return fmt.Errorf("lfs transfer: send %s: %w", oid, err) // the client sees a cut stream
	}
	t.c.w.WriteString("0000")
	if err := t.c.w.Flush(); err != nil {
		end(gitgate.OutcomeError, n)
		return err
	}
	end(gitgate.OutcomeOK, n)
	t.s.cfg.Metrics.served(n)
	t.log.Info("lfs object served", "oid", oid, "bytes", n)
	return nil
}

// lockArgs are a lock as the lock and unlock answers give it.
func lockArgs(lk Lock) []string {
	return []string{"id=" + lk.ID, "path=" + lk.Path, "locked-at=" + lk.LockedAt.UTC().Format("2006-01-02T15:04:05Z07:00"), "ownername=" + lk.Owner.Name}
}

// lock creates a lock: 201 with it, or 409 with the one already there.
func (t *transferSession) lock(kv map[string]string) error {
	if _, r := t.decide(gitgate.LFSLock); r != nil {
		return t.refuse(r)
	}
	if t.op.User == nil {
		return t.refuse(gitgate.ErrAnonymousPush)
	}
	lk, err := t.s.cfg.Locks.Create(t.op.Repo, kv["path"], t.op.User.Name)
	switch {
	case errors.Is(err, ErrLockExists):
		return t.c.status(409, lockArgs(lk), []string{lockExistsMessage})
	case errors.Is(err, ErrBadLockPath):
		return t.c.status(422, nil, []string{"Invalid lock path."})
	case errors.Is(err, ErrTooManyLocks):
		return t.c.status(422, nil, []string{"Too many locks in this repository."})
	case err != nil:
		t.log.Warn("lfs locks", "err", err)
		return t.c.status(500, nil, []string{internalMessage})
	}
	t.log.Info("lfs lock created", "path", lk.Path, "id", lk.ID)
	return t.c.status(201, lockArgs(lk), nil)
}

// listLocks lists the repository's locks, filtered by path or id, with
// whose each is when verify is set (list-locks).
func (t *transferSession) listLocks(kv map[string]string, verify bool) error {
	locks, err := t.s.cfg.Locks.List(t.op.Repo)
	if err != nil {
		t.log.Warn("lfs locks", "err", err)
		return t.c.status(500, nil, []string{internalMessage})
	}
	limit, _ := strconv.Atoi(kv["limit"])
	lines := []string{}
	n := 0
	for _, lk := range locks {
		if p := kv["path"]; p != "" && lk.Path != p {
			continue
		}
		if id := kv["id"]; id != "" && lk.ID != id {
			continue
		}
		if limit > 0 && n == limit {
			break
		}
		n++
		lines = append(lines, "lock "+lk.ID, "path "+lk.ID+" "+lk.Path,
			"locked-at "+lk.ID+" "+lk.LockedAt.UTC().Format("2006-01-02T15:04:05Z07:00"),
			"ownername "+lk.ID+" "+lk.Owner.Name)
		if verify {
			who := "theirs"
			if t.op.User != nil && lk.Owner.Name == t.op.User.Name {
				who = "ours"
			}
			lines = append(lines, "owner "+lk.ID+" "+who)
		}
	}
	return t.c.status(200, nil, lines)
}

// unlock removes a lock: its owner's, or anyone's with force for an
// administrator.
func (t *transferSession) unlock(id string, kv map[string]string) error {
	if _, r := t.decide(gitgate.LFSLock); r != nil {
		return t.refuse(r)
	}
	if t.op.User == nil {
		return t.refuse(gitgate.ErrAnonymousPush)
	}
	force := kv["force"] == "true" && t.op.User.Admin
	lk, err := t.s.cfg.Locks.Delete(t.op.Repo, id, t.op.User.Name, force)
	switch {
	case errors.Is(err, ErrLockNotFound):
		return t.c.status(404, nil, []string{lockNotFoundMessage})
	case errors.Is(err, ErrNotLockOwner):
		return t.c.status(403, nil, []string{notLockOwnerMessage})
	case err != nil:
		t.log.Warn("lfs locks", "err", err)
		return t.c.status(500, nil, []string{internalMessage})
	}
	t.log.Info("lfs lock deleted", "path", lk.Path, "id", lk.ID, "force", force)
	return t.c.status(200, lockArgs(lk), nil)
}
