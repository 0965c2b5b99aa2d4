// Package packcache serves the pack-objects runs of git upload-pack for the
// gate: identical requests share one generated pack, requests that arrive
// while that pack is being written stream the growing file, and the
// generations are limited per repository with a bounded, fair queue.
//
// # How git reaches the cache
//
// The gate's [gitgate.Runner] sets uploadpack.packObjectsHook for the
// upload-pack processes it starts, through GIT_CONFIG_COUNT in their
// environment (git reads the hook only from protected configuration: the
// system and global files, -c and GIT_CONFIG_* of the environment; never
// from a repository's own config). git then runs
//
//	gitgate hook pack-objects git pack-objects --revs --thin --stdout ...
//
// instead of pack-objects. That hook ([RunHook]) reads its stdin (the wants,
// haves, shallow lines), connects to the gate's Unix socket in the data dir
// and sends a per-process secret (from its environment) with its arguments
// and stdin. The gate ([Server]) looks the secret up: it names the
// upload-pack run it was made for, so the hook cannot choose the repository
// or the user; it checks the arguments against the short list upload-pack
// uses, and only then reads the stdin, once the stdin held by all requests
// leaves room for it (stdinBudget; a request that waits past its read
// deadline gets the busy message); then it asks the [Cache] for the pack. The progress lines of a
// generation come back over the socket as frames; the hook writes them to
// its stderr, which upload-pack forwards to the client as today (as
// sideband "remote: " lines).
//
// # Where the pack's bytes go
//
// On Linux the hook attaches its stdout, upload-pack's pipe, to its
// request (SCM_RIGHTS), and the gate writes the pack into that pipe itself:
// from the cache file with splice(2), so the bytes go from the page cache
// into the pipe without a copy in user space, and never through the hook
// or the socket. The gate makes its copy of the pipe non-blocking, so a
// full pipe is waited for in Go's poller (never a busy loop: Go's own
// (*os.File).ReadFrom retries EAGAIN on a blocking pipe), with the write
// deadline and the request's context able to end the wait. It closes its
// copy before it sends the exit frame, so upload-pack sees the pack's end
// once the hook has exited. A generation moves pack-objects' output into
// the cache file with splice too, and wakes the readers after every move
// through the entry's "changed" channel (closed and replaced: a condition
// variable that also works with select); no reader polls. Without the
// cache, pack-objects writes straight into the passed pipe, as it would
// without the hook. A hook that cannot pass a pipe (another system, or a
// stdout that is not a pipe) gets the pack in frames, as before; the gate
// checks that what it received is the write end of a pipe and closes
// anything else.
//
// Before, every byte of a pack was copied through user space four more
// times: by the gate from pack-objects' pipe into the file, from the file
// into the socket, and by the hook from the socket into its stdout (read
// and write each). What remains per clone is upload-pack's own copy (pipe
// to its sideband pkt-lines), the HTTP or SSH relay, and the cache file's
// write into the page cache on a miss; the hook's start-up (a Go binary)
// is the fixed cost of a fetch. The README has the figures.
//
// # Why the gate runs pack-objects, not the hook
//
// The other design, the hook alone with file locks, would need no socket,
// but it cannot apply the limits: the per-repository concurrency, the queue
// with its timeout, and the per-user fairness need one view of every
// generation on the server and need to know the user, which only the gate
// has (the hook runs in an environment a client partly controls: protocol
// options, the request's stdin). Gitaly chose the same for the same reason.
// The gate also knows when an entry is complete without trusting anything on
// disk: the index of complete entries lives in memory, the cache directory
// is emptied when the gate starts, so a crash mid-generation can never leave
// a file that is served as a complete pack.
//
// # The cache
//
// The key is sha256 over the repository's canonical path, git's version,
// the pack-objects arguments (with the filter, shallow and other options) and
// the full stdin. A miss registers an entry and starts a generation: it
// waits for a slot of the [Limiter], runs the real git pack-objects in the
// repository, and writes its stdout to <key>.tmp; every reader, the first
// one included, streams that file as it grows, so the generation runs at
// disk speed whatever the speed of the clients, and goes on when the client
// that started it has gone (bounded by GenerationTimeout). On success the
// file is renamed to <key>.pack and becomes a hit for MaxAge (not fsynced:
// the directory is emptied whenever the cache starts, so no pack has to
// survive a crash);
// on failure it is removed, the readers get an error (git's client then
// reports that the remote failed: it never gets a truncated pack, which it
// would not accept anyway, as the pack's trailing checksum is missing) and
// the next request generates afresh. A cache directory that cannot be
// written (read-only, full) makes the request fall back to a plain
// pack-objects with the same limits; the log says so and the fallbacks
// metric counts it. A background cleaner removes entries older than MaxAge
// and, oldest first, entries over the MaxBytes total.
//
// Hits and joins show no server-side progress ("Counting objects",
// "Compressing objects"): those lines come from a generation, and only the
// request that started it sees them. The client's own progress ("Receiving
// objects", "Resolving deltas") is unchanged.
//
// # Limits
//
// A generation takes a slot of the [Limiter]: at most PerRepo generations run
// at once for a repository, the rest wait in a queue of at most Queue
// requests for at most QueueTimeout, and one user holds at most PerUser
// running or queued generations on the whole server. When a slot frees, it
// goes to the waiter whose user runs the fewest generations at that moment
// (first come among equals), so one CI account queueing a hundred
// generations does not starve everyone else. A request that cannot get a
// slot gets [gitgate.BusyMessage] as a "remote: " line, on HTTP and SSH
// alike, and git ends with an error instead of hanging. Hits and joins take
// no slot: they read a file. A generation gives its slot back as soon as
// pack-objects has exited, before its readers learn that the pack is
// complete, so a client that has its pack never finds its own generation
// still holding the slot.
package packcache
