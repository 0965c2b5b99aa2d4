package gitgate

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Environment variables the gate sets for the git processes it starts, so
// that hooks (see package hooks) know where the state lives and who pushes.
const (
	EnvDataDir   = "GITGATE_DATA_DIR"
	EnvUser      = "GITGATE_USER"
	EnvRepo      = "GITGATE_REPO"
	EnvTransport = "GITGATE_TRANSPORT"
)

// DefaultKillDelay is how long git's process group gets to exit after its
// context ends (SIGTERM to the group) before the group is killed.
const DefaultKillDelay = 5 * time.Second

// gitConfig is passed to every git process as -c options: what a Git host
// serves to every client, whatever the transport.
var gitConfig = []string{
	"uploadpack.allowFilter=true",        // partial clone
	"uploadpack.allowAnySHA1InWant=true", // fetch by commit id, as GitLab allows
	"receive.advertisePushOptions=true",  // git push -o
}

// DefaultPushFinishTimeout is how long a push may go on after its client
// has gone (see [Invocation.Stop]).
const DefaultPushFinishTimeout = 3 * time.Minute

// Runner starts the real git binary for a service. It is the one place that
// knows git's command line and environment; every transport goes through it.
type Runner struct {
	gitPath string
	dataDir string
	baseEnv []string

	// Env holds more KEY=value variables for every git process (and so for
	// its hooks): the shared state database's URL, say.
	Env []string

	// PushFinishTimeout bounds how long a push goes on after its client
	// has gone; zero means DefaultPushFinishTimeout.
	PushFinishTimeout time.Duration
	// KillDelay is how long git's process group has, after SIGTERM, to
	// exit before it gets SIGKILL (zero: DefaultKillDelay). Set it before
	// the first Run.
	KillDelay time.Duration
	// PackObjects, when set, serves the pack-objects runs of upload-pack
	// (package packcache). Set it before the first Run.
	PackObjects PackObjectsHook
	// Pushes, when set, is told of every push's git process (receive-pack,
	// not its ref advertisement), so that the push's hooks can reach the
	// gate (package pgstore's HookGate). Set it before the first Run.
	Pushes SessionHook
}

// SessionHook is told of the git processes of one kind the runner starts.
type SessionHook interface {
	// Start returns more environment for the git process of inv, and the
	// function to call once git has exited.
	Start(inv Invocation) (env []string, done func())
}

// PackObjectsHook serves the packs of upload-pack instead of git's own
// pack-objects, through uploadpack.packObjectsHook.
type PackObjectsHook interface {
	// Start returns the environment that makes upload-pack for inv run the
	// hook (GIT_CONFIG_* with uploadpack.packObjectsHook: git takes it only
	// from protected configuration, never from the repository's), and the
	// function to call once git has exited.
	Start(inv Invocation) (env []string, done func())
}

// NewRunner returns a runner for the git binary at gitPath (looked up in PATH
// when it has no slash) whose processes will find the gate's state in dataDir.
func NewRunner(gitPath, dataDir string) (*Runner, error) {
	path, err := exec.LookPath(gitPath)
	if err != nil {
		return nil, fmt.Errorf("git binary: %w", err)
	}
	return &Runner{gitPath: path, dataDir: dataDir, baseEnv: baseEnv(os.Environ())}, nil
}

// GitPath returns the git binary the runner starts.
func (r *Runner) GitPath() string { return r.gitPath }

// BaseEnv returns the environment of the git processes before the
// per-operation variables: the server's, without GIT_* and GITGATE_*.
func (r *Runner) BaseEnv() []string { return r.baseEnv[:len(r.baseEnv):len(r.baseEnv)] }

// baseEnv is the server's environment without GIT_* variables, which could
// change what git does with the repository (GIT_DIR, GIT_OBJECT_DIRECTORY,
// GIT_CONFIG_*...), and without our own per-process variables.
func baseEnv(env []string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		if strings.HasPrefix(kv, "GIT_") || strings.HasPrefix(kv, "GITGATE_") {
			continue
		}
		out = append(out, kv)
	}
	return out
}

// Invocation is one run of git for an operation.
type Invocation struct {
	Op   Operation
	Repo Repo
	// Protocol is the validated GIT_PROTOCOL value ("" for protocol v0).
	Protocol string
	// StatelessRPC runs the service in smart HTTP's request/response mode.
	StatelessRPC bool
	// AdvertiseRefs only prints the ref advertisement (HTTP info/refs).
	AdvertiseRefs bool

	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	// StopStdin, when set, is called once git has exited to end a Read of
	// Stdin still in progress (an HTTP body whose client stopped sending),
	// so that Run need not wait for it. Without it, a Stdin that is not an
	// *os.File must return from Read on its own.
	StopStdin func()

	// Stop, when set on a push (receive-pack, not AdvertiseRefs), is the
	// server's hard stop, and the push outlives the client: when Run's ctx
	// ends (the client hung up, after the report say) git goes on, with
	// its output discarded, until it exits, PushFinishTimeout has passed,
	// or Stop ends. Once a push's data is in, its ref updates and its
	// post-receive work (replication events) must not be cut short.
	Stop context.Context
}

// ExitError is returned by Run when git ran and exited with a non-zero status.
type ExitError struct{ Code int }

func (e *ExitError) Error() string { return fmt.Sprintf("git exited with status %d", e.Code) }

// Run runs git for inv and waits for it. Bytes stream between the caller's
// reader and writers and git; nothing is buffered whole. git runs in its own
// process group. When ctx ends, the group gets SIGTERM and, after KillDelay,
// SIGKILL, so that no helper (pack-objects, index-pack) outlives the
// operation; git is always reaped before Run returns. A push with inv.Stop
// set is the exception: it outlives ctx (see [Invocation.Stop]).
func (r *Runner) Run(ctx context.Context, inv Invocation) error {
	runCtx := ctx
	if inv.Stop != nil && inv.Op.Service == ReceivePack && !inv.AdvertiseRefs {
		var cancel context.CancelFunc
		runCtx, cancel = r.detach(ctx, inv.Stop)
		defer cancel()
		// A client that is gone fails every write; git must not see that
		// (it would die of SIGPIPE or EPIPE in its post-receive hook).
		inv.Stdout, inv.Stderr = drainOnError(inv.Stdout), drainOnError(inv.Stderr)
	}
	err := r.run(runCtx, inv)
	ctx = runCtx
	var exit *exec.ExitError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &exit) && exit.Exited():
		return &ExitError{Code: exit.ExitCode()}
	case ctx.Err() != nil:
		return fmt.Errorf("git %s %s: %w", inv.Op.Service.Subcommand(), inv.Repo.Name, context.Cause(ctx))
	}
	return fmt.Errorf("git %s %s: %w", inv.Op.Service.Subcommand(), inv.Repo.Name, err)
}

// run starts git, feeds its stdin, and waits for git and for its process
// group as Run describes.
func (r *Runner) run(ctx context.Context, inv Invocation) error {
	killDelay := r.KillDelay
	if killDelay <= 0 {
		killDelay = DefaultKillDelay
	}
	cmd := r.command(inv)
	if r.PackObjects != nil && inv.Op.Service == UploadPack && !inv.AdvertiseRefs {
		env, done := r.PackObjects.Start(inv)
		cmd.Env = append(cmd.Env, env...)
		defer done()
	}
	if r.Pushes != nil && inv.Op.Service == ReceivePack && !inv.AdvertiseRefs {
		env, done := r.Pushes.Start(inv)
		cmd.Env = append(cmd.Env, env...)
		defer done()
	}
	// A stdin that is not a file is copied into a pipe here rather than by
	// os/exec, whose Wait would wait for a Read that may never return.
	var stdinW *os.File
	copied := make(chan struct{})
	if _, isFile := inv.Stdin.(*os.File); inv.Stdin != nil && !isFile {
		pr, pw, err := os.Pipe()
		if err != nil {
			return fmt.Errorf("stdin pipe: %w", err)
		}
		cmd.Stdin, stdinW = pr, pw
		defer pr.Close()
	} else {
		close(copied)
	}
	cmd.WaitDelay = killDelay // for output pipes held open by leftover helpers
	if err := cmd.Start(); err != nil {
		if stdinW != nil {
			stdinW.Close()
		}
		return err
	}
	pgid := cmd.Process.Pid
	if stdinW != nil {
		cmd.Stdin.(*os.File).Close() // git has its copy
		go func() {
			defer close(copied)
			io.Copy(stdinW, inv.Stdin) // ends early (EPIPE) when git exits
			stdinW.Close()
		}()
	}

	// The watcher signals the group when ctx ends; graceOver is closed when
	// the group has had its KillDelay after SIGTERM and got SIGKILL.
	waited := make(chan struct{})
	graceOver := make(chan struct{})
	go func() {
		defer close(graceOver)
		select {
		case <-waited:
			return
		case <-ctx.Done():
		}
		syscall.Kill(-pgid, syscall.SIGTERM)
		t := time.NewTimer(killDelay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-waited:
			// git is gone; its helpers get the rest of the delay, and
			// Run returns as soon as none is left.
			if waitGroupGone(pgid, t.C) {
				return
			}
		}
		syscall.Kill(-pgid, syscall.SIGKILL)
	}()

	err := cmd.Wait()
	close(waited)
	<-graceOver
	if errors.Is(err, exec.ErrWaitDelay) {
		// git exited but a helper kept its output open for KillDelay. The
		// group's id cannot be reused while that helper lives.
		syscall.Kill(-pgid, syscall.SIGKILL)
	}
	if stdinW != nil {
		stdinW.Close() // a copy blocked writing to git now fails
		if inv.StopStdin != nil {
			inv.StopStdin()
		}
		<-copied
	}
	return err
}

// waitGroupGone polls, with growing pauses, until no live process is left
// in the process group (true) or deadline fires (false).
func waitGroupGone(pgid int, deadline <-chan time.Time) bool {
	pause := 5 * time.Millisecond
	for {
		if !groupAlive(pgid) {
			return true
		}
		select {
		case <-deadline:
			return false
		case <-time.After(pause):
		}
		pause = min(2*pause, 200*time.Millisecond)
	}
}

// groupAlive reports whether a process of the group is still running.
// Zombies do not count: an orphaned helper that has exited may wait for a
// long time to be reaped (a container whose init does not reap), but it
// holds nothing.
func groupAlive(pgid int) bool {
	if errors.Is(syscall.Kill(-pgid, 0), syscall.ESRCH) {
		return false
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return true // cannot tell: assume it is
	}
	for _, e := range entries {
		if e.Name()[0] < '0' || e.Name()[0] > '9' {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid pgrp ...
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(stat[i+1:]))
		if len(f) >= 3 && f[2] == strconv.Itoa(pgid) && f[0] != "Z" && f[0] != "X" {
			return true
		}
	}
	return false
}

// detach returns a context for a push's git process that does not end with
// the client's ctx, but PushFinishTimeout after it, or with stop.
func (r *Runner) detach(ctx, stop context.Context) (context.Context, context.CancelFunc) {
	finish := r.PushFinishTimeout
	if finish <= 0 {
		finish = DefaultPushFinishTimeout
	}
	run, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	stopStop := context.AfterFunc(stop, func() { cancel(context.Cause(stop)) })
	var timer *time.Timer
	var mu sync.Mutex
	stopCtx := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		timer = time.AfterFunc(finish, func() {
			cancel(fmt.Errorf("push still running %s after its client left: %w", finish, context.DeadlineExceeded))
		})
	})
	return run, func() {
		stopStop()
		stopCtx()
		mu.Lock()
		if timer != nil {
			timer.Stop()
		}
		mu.Unlock()
		cancel(nil)
	}
}

// errorDrain passes writes on until the first error, then discards them
// and reports success, so that the writer's reader goes on reading.
type errorDrain struct {
	w      io.Writer
	failed bool
}

func drainOnError(w io.Writer) io.Writer {
	if w == nil {
		return nil
	}
	return &errorDrain{w: w}
}

func (d *errorDrain) Write(p []byte) (int, error) {
	if !d.failed {
		n, err := d.w.Write(p)
		if err == nil {
			return n, nil
		}
		d.failed = true
	}
	return len(p), nil
}

func (r *Runner) command(inv Invocation) *exec.Cmd {
	args := make([]string, 0, 2*len(gitConfig)+5)
	for _, kv := range gitConfig {
		args = append(args, "-c", kv)
	}
	args = append(args, inv.Op.Service.Subcommand())
	if inv.Op.Service == UploadPack {
		// Serve the directory itself, never <dir>/.git. receive-pack and
		// upload-archive have no --strict: the Resolver refuses repositories
		// that hold a .git.
		args = append(args, "--strict")
	}
	if inv.StatelessRPC {
		args = append(args, "--stateless-rpc")
	}
	if inv.AdvertiseRefs {
		args = append(args, "--http-backend-info-refs")
	}
	// The resolver returns absolute paths, so the last argument can never be
	// taken for an option.
	args = append(args, inv.Repo.Path)

	cmd := exec.Command(r.gitPath, args...)
	cmd.Dir = inv.Repo.Path
	cmd.Env = append(r.baseEnv[:len(r.baseEnv):len(r.baseEnv)],
		EnvDataDir+"="+r.dataDir,
		EnvUser+"="+inv.Op.User.String(),
		EnvRepo+"="+inv.Repo.Name,
		EnvTransport+"="+string(inv.Op.Transport),
	)
	cmd.Env = append(cmd.Env, r.Env...)
	if inv.Protocol != "" {
		cmd.Env = append(cmd.Env, "GIT_PROTOCOL="+inv.Protocol)
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = inv.Stdin, inv.Stdout, inv.Stderr
	// git starts helpers (pack-objects, index-pack): they share its
	// process group, which Run signals as a whole.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	return cmd
}

// ErrInvalidProtocol is returned by [ParseProtocol] for a malformed value.
var ErrInvalidProtocol = errors.New("invalid Git-Protocol")

// maxProtocolLength bounds the Git-Protocol header / GIT_PROTOCOL variable.
const maxProtocolLength = 256

// ParseProtocol validates a Git-Protocol header or GIT_PROTOCOL value and
// returns what may be passed to git. The value is a colon-separated list of
// key or key=value items made of printable ASCII without spaces. Only the
// "version" key matters to git; it must be 0, 1 or 2. Anything else is
// rejected so that no hostile text reaches git's environment.
func ParseProtocol(v string) (string, error) {
	if v == "" {
		return "", nil
	}
	if len(v) > maxProtocolLength {
		return "", fmt.Errorf("%w: longer than %d bytes", ErrInvalidProtocol, maxProtocolLength)
	}
	for _, item := range strings.Split(v, ":") {
		key, val, hasVal := strings.Cut(item, "=")
		if !isProtocolToken(key) || (hasVal && !isProtocolToken(val)) {
			return "", fmt.Errorf("%w: %q", ErrInvalidProtocol, v)
		}
		if key == "version" && val != "0" && val != "1" && val != "2" {
			return "", fmt.Errorf("%w: unsupported version %q", ErrInvalidProtocol, val)
		}
	}
	return v, nil
}

func isProtocolToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || c == ':' || c == '=' {
			return false
		}
	}
	return true
}
