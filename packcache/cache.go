package packcache

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Defaults of the cache's [Config].
const (
	DefaultMaxAge            = 5 * time.Minute
	DefaultMaxBytes          = 4 << 30
	DefaultGenerationTimeout = 30 * time.Minute
	// MaxStdin bounds the stdin of one pack-objects request (wants, haves,
	// shallow lines): the gate holds it in memory while it runs.
	MaxStdin = 32 << 20
)

// Config is the cache's setting.
type Config struct {
	// Dir holds the cache files. It is emptied when the cache starts.
	Dir string
	// MaxAge is how long a complete entry is served (zero: DefaultMaxAge).
	MaxAge time.Duration
	// MaxBytes caps the complete entries' total size (zero:
	// DefaultMaxBytes); the oldest go first.
	MaxBytes int64
	// Disabled runs pack-objects for every request (the limits still apply).
	Disabled bool
	// MinOccurrences is how many times a key must have been asked for
	// before (each within MaxAge of the one before) for its pack to be
	// written into the cache. 0 caches every pack. With 1, a request seen
	// for the first time runs pack-objects straight to its client, as
	// without the cache, and only a key asked for again is cached: most
	// fetches are unique (their haves differ), and writing their packs
	// costs the server a copy of every byte.
	MinOccurrences int
	// GenerationTimeout bounds one pack-objects run (zero: default).
	GenerationTimeout time.Duration
	// Git is the git binary (a path).
	Git string
	// Env is the environment of pack-objects (GIT_DIR is added).
	Env []string
	// Limits bounds the generations.
	Limits Limits
	// Stats counts; nil makes one.
	Stats *Stats
	Log   *slog.Logger
}

// Request is one pack-objects run upload-pack asked for.
type Request struct {
	// RepoPath is the repository's canonical path; Repo its name (logs).
	RepoPath, Repo string
	// User is the key the user is counted under (gitgate.UserKey).
	User string
	// Args are git's arguments, after "git" (checked by [CheckArgs]).
	Args []string
	// Stdin is pack-objects' whole input.
	Stdin []byte
}

// errCacheWrite marks a generation that failed because its cache file
// could not be written: readers that sent nothing yet fall back.
var errCacheWrite = errors.New("cache file not writable")

// ErrGenerationFailed is what the readers of a failed generation get.
var ErrGenerationFailed = errors.New("pack generation failed")

// Cache shares generated packs between identical requests.
type Cache struct {
	cfg       Config
	gitVer    string
	limiter   *Limiter
	stats     *Stats
	log       *slog.Logger
	ctx       context.Context // the server's: generations outlive their first client
	writeable bool

	mu           sync.Mutex
	entries      map[string]*entry
	total        int64
	seen         map[string]sighting // keys not cached yet (MinOccurrences)
	maxSightings int
	wg           sync.WaitGroup
}

// maxSightings bounds the keys the cache remembers for MinOccurrences:
// past it the memory is emptied (a flood of unique fetches cannot grow
// it; a key asked for again only starts counting afresh).
const maxSightings = 1 << 16

// sighting is how often a key not cached yet was asked for, and when last.
type sighting struct {
	n    int
	last time.Time
}

// entry is one pack, complete or being generated.
type entry struct {
	key     string
	dir     string
	created time.Time

	mu       sync.Mutex
	path     string        // the file to open: <key>.tmp, then <key>.pack
	changed  chan struct{} // closed and replaced whenever size or done change
	size     int64
	done     bool
	err      error
	complete bool // written whole and renamed: a hit
	progress io.Writer
}

// New returns a cache. ctx bounds the generations and the cleaner; Close
// waits for them once it has ended. A Dir that cannot be created or
// written is logged and every request falls back to a plain pack-objects.
func New(ctx context.Context, cfg Config) (*Cache, error) {
	if cfg.MaxAge <= 0 {
		cfg.MaxAge = DefaultMaxAge
	}
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = DefaultMaxBytes
	}
	if cfg.GenerationTimeout <= 0 {
		cfg.GenerationTimeout = DefaultGenerationTimeout
	}
	if cfg.Stats == nil {
		cfg.Stats = &Stats{}
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	out, err := exec.Command(cfg.Git, "version").Output()
	if err != nil {
		return nil, fmt.Errorf("git version: %w", err)
	}
	c := &Cache{
		cfg: cfg, gitVer: strings.TrimSpace(string(out)), stats: cfg.Stats, log: cfg.Log, ctx: ctx,
		limiter: NewLimiter(cfg.Limits, cfg.Stats), entries: map[string]*entry{},
		seen: map[string]sighting{}, maxSightings: maxSightings,
	}
	if !cfg.Disabled {
		// A directory that cannot be prepared now is tried again by every
		// generation: each one that cannot write falls back.
		c.writeable = true
		if err := c.reset(); err != nil {
			c.log.Warn("pack-objects cache directory unusable: packs are generated without it until it can be written", "dir", cfg.Dir, "err", err)
		}
	}
	return c, nil
}

// reset creates Dir, empty: files left by an earlier gate are never served.
func (c *Cache) reset() error {
	if err := os.MkdirAll(c.cfg.Dir, 0o700); err != nil {
		return err
	}
	names, err := os.ReadDir(c.cfg.Dir)
	if err != nil {
		return err
	}
	for _, n := range names {
		if isCacheFile(n.Name()) {
			if err := os.Remove(filepath.Join(c.cfg.Dir, n.Name())); err != nil {
				return err
			}
		}
	}
	probe, err := os.CreateTemp(c.cfg.Dir, "probe-*.tmp")
	if err != nil {
		return err
	}
	probe.Close()
	return os.Remove(probe.Name())
}

// isCacheFile reports whether name is one of the cache's own files: a key
// (64 hex digits) with .pack or .tmp, or a write probe. Only those are
// removed at start, so a --pack-objects-cache-dir pointed by mistake at a
// directory of other packs (a repository's objects/pack) loses nothing.
func isCacheFile(name string) bool {
	if strings.HasPrefix(name, "probe-") && strings.HasSuffix(name, ".tmp") {
		return true
	}
	key, ok := strings.CutSuffix(name, ".pack")
	if !ok {
		key, ok = strings.CutSuffix(name, ".tmp")
	}
	if !ok || len(key) != 64 {
		return false
	}
	_, err := hex.DecodeString(key)
	return err == nil && strings.ToLower(key) == key
}

// Limiter returns the cache's generation limiter.
func (c *Cache) Limiter() *Limiter { return c.limiter }

// Stats returns the cache's counters.
func (c *Cache) Stats() *Stats { return c.stats }

// Key is the cache key of req: everything that shapes the pack.
func (c *Cache) Key(req Request) string {
	h := sha256.New()
	field := func(b []byte) {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	field([]byte(req.RepoPath))
	field([]byte(c.gitVer))
	field([]byte{byte(len(req.Args))})
	for _, a := range req.Args {
		field([]byte(a))
	}
	field(req.Stdin)
	return hex.EncodeToString(h.Sum(nil))
}

// Serve writes the pack for req to stdout and its progress and errors to
// stderr, and returns pack-objects' exit status. A refusal for want of a
// slot is returned as a *BusyError (nothing was written then).
func (c *Cache) Serve(ctx context.Context, req Request, stdout, stderr io.Writer) (int, error) {
	if !c.writeable {
		if !c.cfg.Disabled {
			c.stats.Fallbacks.Add(1)
		}
		return c.direct(ctx, req, stdout, stderr)
	}
	key := c.Key(req)
	now := time.Now()
	c.mu.Lock()
	e := c.entries[key]
	if e != nil && e.expired(now, c.cfg.MaxAge) {
		c.dropLocked(e)
		e = nil
	}
	if e == nil && !c.occurredLocked(key, now) {
		c.mu.Unlock()
		c.stats.Uncached.Add(1)
		return c.direct(ctx, req, stdout, stderr)
	}
	first := e == nil
	if first {
		e = &entry{key: key, dir: c.cfg.Dir, created: now, changed: make(chan struct{}),
			path: filepath.Join(c.cfg.Dir, key+".tmp"), progress: &lockedWriter{w: stderr}}
		c.entries[key] = e
		c.wg.Add(1)
		c.stats.Misses.Add(1)
		go c.generate(e, req)
	} else if e.generated() {
		c.stats.Hits.Add(1)
	} else {
		c.stats.Joins.Add(1)
	}
	c.mu.Unlock()

	n, err := e.stream(ctx, stdout)
	if first {
		e.setProgress(io.Discard)
	} else {
		c.stats.BytesServed.Add(n)
	}
	switch {
	case err == nil:
		return 0, nil
	case errors.Is(err, errCacheWrite) && n == 0:
		c.stats.Fallbacks.Add(1)
		return c.direct(ctx, req, stdout, stderr)
	case IsBusy(err):
		return 1, err
	case ctx.Err() != nil:
		return 128, err
	}
	if !first { // the first reader saw pack-objects' own messages
		fmt.Fprintln(stderr, "fatal: the pack could not be generated; try again")
	}
	return 128, err
}

// occurredLocked reports whether key was asked for at least
// MinOccurrences times before, and counts this time if not.
func (c *Cache) occurredLocked(key string, now time.Time) bool {
	if c.cfg.MinOccurrences <= 0 {
		return true
	}
	s, ok := c.seen[key]
	if ok && now.Sub(s.last) < c.cfg.MaxAge && s.n >= c.cfg.MinOccurrences {
		delete(c.seen, key) // the entry stands for it from now on
		return true
	}
	if !ok || now.Sub(s.last) >= c.cfg.MaxAge {
		s = sighting{}
		if !ok && len(c.seen) >= c.maxSightings {
			clear(c.seen)
		}
	}
	s.n++
	s.last = now
	c.seen[key] = s
	return false
}

// direct runs pack-objects for req straight to the client, under the
// limits, without the cache.
func (c *Cache) direct(ctx context.Context, req Request, stdout, stderr io.Writer) (int, error) {
	release, err := c.limiter.Acquire(ctx, req.RepoPath, req.User)
	if err != nil {
		return 1, err
	}
	defer release()
	ctx, cancel := context.WithTimeout(ctx, c.cfg.GenerationTimeout)
	defer cancel()
	cmd := c.command(ctx, req)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if p, ok := stdout.(*pipeSink); ok && p.file() != nil {
		// upload-pack's own pipe: pack-objects writes into it, as it would
		// without the hook (git waits on a full non-blocking pipe).
		cmd.Stdout = p.file()
	}
	err = c.runCmd(cmd)
	var exit *exec.ExitError
	if errors.As(err, &exit) && exit.Exited() {
		return exit.ExitCode(), nil
	}
	if err != nil {
		return 128, err
	}
	return 0, nil
}

func (c *Cache) command(ctx context.Context, req Request) *exec.Cmd {
	cmd := exec.CommandContext(ctx, c.cfg.Git, req.Args...)
	cmd.Dir = req.RepoPath
	cmd.Env = append(c.cfg.Env[:len(c.cfg.Env):len(c.cfg.Env)], "GIT_DIR="+req.RepoPath)
	cmd.Stdin = bytes.NewReader(req.Stdin)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// runCmd runs cmd, counted.
func (c *Cache) runCmd(cmd *exec.Cmd) error {
	start := time.Now()
	c.stats.Generations.Add(1)
	c.stats.Running.Add(1)
	defer func() {
		c.stats.Running.Add(-1)
		c.stats.observeGeneration(time.Since(start))
	}()
	return cmd.Run()
}

// runPiped runs cmd, counted, with its stdout copied to w through a
// 1 MiB pipe in reads of up to 1 MiB, so that the readers wake once per
// large chunk rather than per 32 KiB.
func (c *Cache) runPiped(cmd *exec.Cmd, w io.Writer) error {
	pr, pw, err := os.Pipe()
	if err != nil {
		return err
	}
	growPipe(pw)
	cmd.Stdout = pw
	start := time.Now()
	c.stats.Generations.Add(1)
	c.stats.Running.Add(1)
	defer func() {
		c.stats.Running.Add(-1)
		c.stats.observeGeneration(time.Since(start))
	}()
	if err := cmd.Start(); err != nil {
		pr.Close()
		pw.Close()
		return err
	}
	pw.Close()
	var cerr error
	if ew, ok := w.(*entryWriter); ok {
		// pipe → cache file inside the kernel (splice), where it can.
		cerr = ew.spliceFrom(pr)
	} else {
		_, cerr = io.CopyBuffer(struct{ io.Writer }{w}, pr, make([]byte, 1<<20))
	}
	pr.Close() // a failed write ends pack-objects (EPIPE)
	err = cmd.Wait()
	if cerr != nil {
		return cerr
	}
	return err
}

// generate waits for a slot, runs pack-objects into e's file and publishes
// the result.
func (c *Cache) generate(e *entry, req Request) {
	defer c.wg.Done()
	ctx, cancel := context.WithTimeout(c.ctx, c.cfg.GenerationTimeout)
	defer cancel()
	release, err := c.limiter.Acquire(ctx, req.RepoPath, req.User)
	if err != nil {
		c.fail(e, err)
		return
	}
	defer release()
	f, err := os.OpenFile(e.path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		c.log.Warn("pack-objects cache not writable: serving without it", "repo", req.Repo, "err", err)
		c.fail(e, fmt.Errorf("%w: %w", errCacheWrite, err))
		return
	}
	cmd := c.command(ctx, req)
	cmd.Stderr = e
	ew := &entryWriter{e: e, f: f}
	err = c.runPiped(cmd, ew)
	// pack-objects has exited: its slot is free before any reader learns
	// how it ended, so that a client that has its pack may fetch again at
	// once (with no queue, it was refused while this one still renamed
	// its file).
	release()
	var werr *writeError
	if errors.As(err, &werr) || (err == nil && ew.err != nil) {
		c.log.Warn("pack-objects cache write failed: serving without it", "repo", req.Repo, "err", err)
		err = fmt.Errorf("%w: %w", errCacheWrite, err)
	}
	if err != nil {
		f.Close()
		if !errors.Is(err, errCacheWrite) {
			c.stats.Failures.Add(1)
			c.log.Warn("pack-objects failed", "repo", req.Repo, "user", req.User, "err", err)
			err = fmt.Errorf("%w: %w", ErrGenerationFailed, err)
		}
		// The readers learn of the failure before the file goes: one that
		// opened no file yet must not take the missing file for an
		// unwritable cache and run a pack-objects of its own.
		c.fail(e, err)
		os.Remove(e.path)
		return
	}
	// The readers can finish now; the entry becomes a hit once renamed. No
	// fsync: the cache is emptied whenever it starts, so a pack never has
	// to outlive a crash, and flushing every pack to disk cost a full
	// clone's generation about a third more than a plain pack-objects.
	e.finish(nil)
	final := filepath.Join(c.cfg.Dir, e.key+".pack")
	if err := f.Close(); err != nil {
		c.failLate(e, err)
		return
	}
	e.mu.Lock()
	err = os.Rename(e.path, final)
	if err == nil {
		e.path = final
	}
	e.mu.Unlock()
	if err != nil {
		c.failLate(e, err)
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries[e.key] != e {
		os.Remove(final) // evicted meanwhile
		return
	}
	e.mu.Lock()
	e.complete = true
	e.created = time.Now()
	size := e.size
	e.mu.Unlock()
	c.total += size
	c.stats.CacheBytes.Store(c.total)
	c.evictLocked(time.Now())
}

// fail removes e from the index and ends its readers with err.
func (c *Cache) fail(e *entry, err error) {
	c.mu.Lock()
	if c.entries[e.key] == e {
		delete(c.entries, e.key)
	}
	c.mu.Unlock()
	e.finish(err)
}

// failLate drops an entry whose readers were served but which could not be
// kept.
func (c *Cache) failLate(e *entry, err error) {
	c.log.Warn("pack-objects cache entry not kept", "err", err)
	c.mu.Lock()
	if c.entries[e.key] == e {
		delete(c.entries, e.key)
	}
	c.mu.Unlock()
	e.mu.Lock()
	os.Remove(e.path)
	e.mu.Unlock()
}

// dropLocked removes a complete or expired entry and its file; readers
// that have it open go on reading.
func (c *Cache) dropLocked(e *entry) {
	delete(c.entries, e.key)
	e.mu.Lock()
	complete, size, path := e.complete, e.size, e.path
	e.mu.Unlock()
	if complete {
		c.total -= size
		c.stats.CacheBytes.Store(c.total)
		os.Remove(path)
	}
	c.stats.Evictions.Add(1)
}

// evictLocked removes the expired entries, then the oldest complete ones
// while the total is over MaxBytes.
func (c *Cache) evictLocked(now time.Time) {
	var complete []*entry
	for _, e := range c.entries {
		if e.expired(now, c.cfg.MaxAge) {
			c.dropLocked(e)
		} else if e.isComplete() {
			complete = append(complete, e)
		}
	}
	if c.total <= c.cfg.MaxBytes {
		return
	}
	sort.Slice(complete, func(i, j int) bool { return complete[i].created.Before(complete[j].created) })
	for _, e := range complete {
		if c.total <= c.cfg.MaxBytes {
			break
		}
		c.dropLocked(e)
	}
}

// Run removes expired entries every interval (zero: MaxAge/4, at most a
// minute) until ctx ends, then waits for the generations.
func (c *Cache) Run(ctx context.Context, interval time.Duration) error {
	if interval <= 0 {
		interval = min(c.cfg.MaxAge/4, time.Minute)
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			c.wg.Wait()
			return nil
		case now := <-t.C:
			c.Clean(now)
		}
	}
}

// Clean removes the entries expired at now and those over the size cap,
// and forgets the keys not asked for within MaxAge.
func (c *Cache) Clean(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.evictLocked(now)
	for key, s := range c.seen {
		if now.Sub(s.last) >= c.cfg.MaxAge {
			delete(c.seen, key)
		}
	}
}

// Wait waits for the generations in progress (their context must end or
// they must finish).
func (c *Cache) Wait() { c.wg.Wait() }

// Len returns the number of entries, complete or in progress.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}

// generated reports whether the whole pack is in the file.
func (e *entry) generated() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.done && e.err == nil
}

func (e *entry) isComplete() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.complete
}

// expired reports whether a complete entry is older than maxAge.
func (e *entry) expired(now time.Time, maxAge time.Duration) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.complete && now.Sub(e.created) >= maxAge
}

func (e *entry) notifyLocked() {
	close(e.changed)
	e.changed = make(chan struct{})
}

func (e *entry) finish(err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.done, e.err = true, err
	e.notifyLocked()
}

func (e *entry) setProgress(w io.Writer) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.progress = w
}

// Write is pack-objects' stderr: it goes to the first reader while it is
// there.
func (e *entry) Write(p []byte) (int, error) {
	e.mu.Lock()
	w := e.progress
	e.mu.Unlock()
	w.Write(p)
	return len(p), nil
}

// writeError is a failed write of the cache file.
type writeError struct{ err error }

func (w *writeError) Error() string { return "write cache file: " + w.err.Error() }
func (w *writeError) Unwrap() error { return w.err }

// entryWriter appends pack-objects' stdout to the entry's file and wakes
// the readers.
type entryWriter struct {
	e   *entry
	f   *os.File
	err error
}

func (w *entryWriter) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	w.advance(int64(n))
	if err != nil {
		w.err = &writeError{err}
		return n, w.err
	}
	return n, nil
}

// advance records n more bytes in the file and wakes the readers.
func (w *entryWriter) advance(n int64) {
	if n > 0 {
		w.e.mu.Lock()
		w.e.size += n
		w.e.notifyLocked()
		w.e.mu.Unlock()
	}
}

// spliceFrom appends everything from the pipe pr to the file, in the
// kernel where it can (see spliceToFile), waking the readers as it goes.
func (w *entryWriter) spliceFrom(pr *os.File) error {
	handled, err := spliceToFile(pr, w.f, w.advance)
	if handled {
		if err != nil && !errors.Is(err, errPipeRead) {
			w.err = &writeError{err}
			return w.err
		}
		return err
	}
	_, err = io.CopyBuffer(struct{ io.Writer }{w}, pr, make([]byte, 1<<20))
	return err
}

// stream copies e's pack to w as it grows, until the generation is done.
// It returns the bytes written and, when the generation failed, its error.
func (e *entry) stream(ctx context.Context, w io.Writer) (int64, error) {
	var f *os.File
	defer func() {
		if f != nil {
			f.Close()
		}
	}()
	buf := make([]byte, 256<<10)
	var off int64
	for {
		e.mu.Lock()
		size, done, err, changed, path := e.size, e.done, e.err, e.changed, e.path
		if err == nil && f == nil && size > off { // a failed file may be gone
			var oerr error
			if f, oerr = os.Open(path); oerr != nil {
				e.mu.Unlock()
				return off, fmt.Errorf("%w: %w", errCacheWrite, oerr)
			}
		}
		e.mu.Unlock()
		if err != nil {
			return off, err
		}
		if fs, ok := w.(fileSender); ok && off < size {
			// Straight from the file to the socket (sendfile where the
			// kernel has it): f's offset is off, as only this loop reads f.
			n, serr := fs.SendFile(f, size-off)
			off += n
			if serr != nil {
				return off, serr
			}
		}
		for off < size {
			n, rerr := f.ReadAt(buf[:min(int64(len(buf)), size-off)], off)
			if n > 0 {
				if _, werr := w.Write(buf[:n]); werr != nil {
					return off, werr
				}
				off += int64(n)
			}
			if rerr != nil && !(errors.Is(rerr, io.EOF) && n > 0) {
				return off, fmt.Errorf("read cache file: %w", rerr)
			}
		}
		if done {
			return off, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return off, ctx.Err()
		}
	}
}

// fileSender is a writer that can take bytes straight from a file.
type fileSender interface {
	// SendFile writes the next n bytes of f.
	SendFile(f *os.File, n int64) (int64, error)
}

// lockedWriter serializes writes and swallows errors (a reader's stderr).
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.w.Write(p)
	return len(p), nil
}
