// Package geo runs gitgate as GitLab Geo does: one primary site and any
// number of read-only secondary sites, where maintenance mode set on the
// primary holds on every site within milliseconds, and pushes sent to a
// secondary are carried out by the primary.
//
// # Roles and configuration
//
// The primary lists its secondaries in <data-dir>/geo.yaml ([Config]): a
// node name and a file holding the secret shared with that node. A
// secondary is started with the primary's URL, its own node name and its
// secret file ([SecondaryOptions]); secret files must not be readable by
// group or others and hold at least 32 bytes. A secondary's data dir
// carries a marker ([WriteSecondaryMarker]) so that the CLI and the
// settings API refuse to change its maintenance state there
// ([ChangeOnPrimary]).
//
// # Tokens
//
// Site-to-site calls carry "Authorization: GL-Geo <node>:<jwt>", an HS256
// JWT signed with the node's secret, valid for a minute ([TokenTTL]), and
// scoped: "status" to follow the state, "push" for one repository on behalf
// of one user ([Sign], [Verifier]). Bad, expired, wrongly scoped or foreign
// tokens are answered 401 {"message":"401 Unauthorized: <reason>"}.
//
// # State propagation
//
// The primary serves a long-poll ([Primary.StatusHandler]):
//
//	GET /api/v4/geo/status?after=<version>&wait=25s
//	200 {"state":{"enabled":true,"message":"...","since":"...","by":"...","version":7},"reset":false}
//
// It answers at once when its version differs from after (or when after
// is absent), and otherwise when the state next changes or wait runs out.
// "reset" says the primary's version went below the secondary's: the
// secondary replaces its copy. Versions on the primary never go back in
// normal operation ("gitgate maintenance reset" continues above the highest
// version held, so a reset reaches secondaries as an ordinary newer state);
// the flag is for a state replaced by hand with a lower version, such as a
// restored backup. A primary that cannot read its own state (corrupt,
// removed, unreadable in time) answers 503, never "not in maintenance".
//
// A secondary site of several gates sharing a database (package pgstore)
// elects one gate to follow and replicate; each gate has a follower made
// with [NewSiteFollower], which hands pushes to the primary on every gate
// but runs (Run, and the [Replicator]) on the elected gate only. Its
// mirror is shared, so its first answer after a start is not forced in:
// only the primary's "reset" steps the shared state back. While its own
// follower does not run, a gate reports the site's follower (the elected
// gate's status, read from the database), in Status and in its status file
// ([Follower.KeepStatusFile]). The replicated access data goes into the
// database through [DocumentAccess].
//
// The secondary's [Follower] holds that poll open, resuming from the last
// version it saw, so no change is missed across disconnections. Each new
// state is written to the secondary's own state file as it is
// (gitgate.FileStore.Mirror) and loaded at once (LiveState.Reload), so the
// secondary's server, hooks and CLI all see the primary's state. While the
// primary is unreachable the secondary keeps its last state and retries
// with exponential backoff and full jitter; [Follower.Status] says how
// stale it is. The primary tracks each secondary's last contact, version
// seen and lag ([Primary.Nodes]). Both sides also keep a small status file
// in the data dir for the CLI ([ReadFollowerStatus], [ReadPrimaryStatus]).
//
// # Pushes to a secondary
//
// A push the secondary refuses itself (maintenance, access) is refused
// there, with the same words as on the primary. A push it would allow is
// proxied to the primary over smart HTTP, for both transports, with a push
// token naming the user and repository ([Follower.ProxyHTTPPush],
// [Follower.ProxySSHPush]); the primary authenticates it
// ([Verifier.Authenticator]) and applies its own access rules and
// maintenance state, and the client sees the primary's answer. So a
// secondary with a stale view cannot let a push through while the primary
// is in maintenance.
//
// The HTTP front end decides which requests to proxy: a git-receive-pack
// request (info/refs?service=git-receive-pack or POST git-receive-pack)
// that the secondary's policy allows goes to ProxyHTTPPush, everything
// else to the normal smart HTTP server. The SSH front end calls
// ProxySSHPush in place of running git-receive-pack, and shows a
// *gitgate.Refusal it returns in its own format.
//
// # Replication
//
// Every secondary keeps a full, verified copy of the primary's
// repositories (every ref under refs/, and HEAD) and of its access data,
// also while in maintenance. It is change-driven, with a reconcile behind it.
//
// Changes: the installed reference-transaction hook appends the
// repository's directory to <data-dir>/changes.log for every committed ref
// update (a push through the gate, a local push on the server's disk,
// another git server), except the gate's own replication
// (gitgate.EnvReplication). The primary's [Feed] watches that journal, lists
// the repositories every few seconds (for those created or removed without
// a ref update) and watches the access data; each change becomes an
// [Event] with a sequence number: the repository, its [RefState] (a
// checksum of its refs and HEAD, computed the same way on both sides by
// [Checksum]), or "deleted", or the access data's new version. The log is
// kept in memory (the last 4096 events) under a random epoch.
//
// Secondaries learn of events over the channel they already hold: a second
// long-poll on the primary (GET /api/v4/geo/events?epoch=&after=&wait=,
// scope "status"), resuming from the last sequence seen; when the epoch
// changed (the primary restarted) or the events are gone, the answer says
// "reconcile". The [Replicator] then compares every repository's RefState
// with the primary's listing (GET /api/v4/geo/repositories), which it also
// does at start and every reconcile interval, so a secondary that was down
// catches up by itself.
//
// Transport: git fetch --prune --atomic '+refs/*:refs/*' from the
// primary's smart HTTP, authenticated by a "replicate" token for that one
// repository, passed to git as http.extraHeader through GIT_CONFIG_*
// variables (never on a command line or in a repository's config). The
// primary's authenticator ([Verifier.Authenticator]) accepts that token on
// upload-pack requests for its repository only, as a site identity that
// its policy lets read exactly that repository (gitgate.User.SiteRepo).
// The fetch runs with gitgate.EnvReplication=1, so the secondary's own
// hooks let it through in maintenance; its user-facing policy is not
// involved. At most Parallel fetches run at once (default 4); a failing
// repository is retried with exponential backoff and never holds up the
// others. A fetch that is interrupted leaves the refs as they were (atomic
// ref update after the pack is complete). HEAD is set to the primary's.
// A repository new to the secondary is made in a hidden staging directory
// of the repository root, with the gate's hooks, and moved into place once
// it holds the primary's refs, so clients never see it half made.
//
// Verification: after each fetch the copy's RefState must equal the
// primary's (asked again if the primary moved on meanwhile); otherwise the
// repository is "failed" and re-synced with backoff. The reconcile finds a
// ref changed by hand on a secondary, logs it and repairs it.
//
// Deletion: a repository gone from the primary's listing for DeleteDelay
// (default 10 minutes) is moved to <data-dir>/geo-trash/, whose entries
// are removed after TrashRetention (default 7 days).
//
// Git LFS objects replicate with their repository: after a repository's
// refs are synced (or found equal), the secondary asks the primary for the
// objects linked to it (GET /api/v4/geo/lfs/objects?repo=, a replicate
// token for that repository) and downloads each one it does not hold
// verified (GET /api/v4/geo/lfs/object?repo=&oid=), streamed into its LFS
// store, which checks oid and size before the object exists; then links
// it to the repository. An object already stored is hashed again when its
// file changed since it was last verified (and once after each start), so
// a copy corrupted on disk is found on the next reconcile and copied
// again. A repository whose objects fail is "failed" and retried with
// backoff, like a failed fetch; the objects are counted in
// [ReplicationStatus].LFS. An upload on the primary is an event
// ([Feed.LFSChanged]); the reconcile checks every repository's objects.
// LFS writes sent to a secondary go to the primary ([Follower.ProxyLFS]),
// authenticated there by a push token on the repository's LFS path.
//
// Access data: behind the [AccessData] interface (export snapshot bytes and
// a version; import a snapshot), so any store can be replicated;
// [FileAccess] is the access.yaml file. The secondary fetches the snapshot
// (GET /api/v4/geo/access) when the version in an events answer differs
// from its own, validates it and writes it atomically; the server's watcher
// loads it. The CLI refuses to change access data on a secondary
// ([ChangeAccessOnPrimary]). geo.yaml and the secrets stay per site.
//
// Status: each secondary reports its [ReplicationStatus] (synced, pending,
// failed, oldest unsynced change, last contact) to the primary (POST
// /api/v4/geo/report) when it changes and every few seconds; it is in
// [Primary.Nodes], [Follower.Status], the status files that "gitgate geo
// status" reads, the readiness details and the metrics.
//
// # Failover terms: one primary at a time
//
// Every site keeps its role and the highest failover term it has seen in
// <data-dir>/geo-role.json ([RoleRecord], written atomically and fsynced
// before the site acts on it), or, for a primary site whose gates share a
// database, in its one geo_role row: the [Guard] reads and writes it
// through a [RoleStore] ([FileRoleStore], or package pgstore's RoleStore,
// which refuses a lower epoch) and does not know which; on a database
// site every gate's Guard re-reads the row when it changes
// ([Guard.Reload]), so a demotion one gate hears refuses pushes on all.
// A [Term] is an epoch, which only grows, and
// the node name of that epoch's primary; the original primary holds epoch
// 0. "gitgate geo promote" on a secondary ([Promote]) takes the highest
// epoch the site has seen plus one and names itself; it refuses unless the
// running gate follows its primary live and its last comparison found 0
// pending and 0 failed repositories, or --force, which prints what may be
// lost (the pending repositories and the age of the oldest unsynced
// change).
//
// Terms travel on the channel every secondary already holds: the status
// poll's token carries the secondary's term (signed, in [Claims].Term), and
// the answer carries the primary's term and node name. The rule, applied
// by the primary's [Guard] on every poll ([Guard.Observe]) and by the
// [Follower] on every answer:
//
//   - a higher epoch naming another site demotes a primary at once: the
//     role file says secondary before Observe returns, the secondary
//     marker is written (the CLI and the settings API refuse maintenance
//     and access changes), and every push is refused with [Demoted];
//   - the same epoch naming another primary is a conflict: every push is
//     refused ([ConflictMessage]) until an administrator resolves it;
//   - a secondary persists a higher term before anything else, and stops
//     mirroring a site that is not the primary of the highest term it
//     knows (its pushes, proxied there, are refused by that site).
//
// A running secondary that is promoted presents its new term within
// promotionCheck (a held poll is cut short), so the old primary demotes
// itself at once while it is up.
//
// A primary that restarts does not know whether a failover happened while
// it was down. Except at its first start (no role file yet: no site can
// have been promoted over it), it starts fenced ([FencedMessage]): pushes are refused until
// every secondary listed in geo.yaml has presented the primary's own term
// on its status poll. The promoted site was one of those secondaries and
// never presents the old term again, so an old primary that missed a
// failover stays fenced (and is demoted by the first secondary that knows
// the new term). An administrator who knows no other site can have been
// promoted (a secondary is gone for good) lifts the fence with
// --geo-confirm-primary; it cannot undo a demotion.
//
// A site demoted by "gitgate geo promote" (an unplanned failover) does not
// follow the new primary by itself: restart it as a secondary of the new
// primary (its --geo-primary-url, a secret listed in the new primary's
// geo.yaml).
//
// # Planned failover
//
// "gitgate geo failover --to NODE" runs the [Failover] step machine in the
// primary's running gate (POST [FailoverPath], admin only; the CLI only
// prints its progress lines, [FailoverClient]). Five steps, each persisted
// in <data-dir>/geo-failover.json ([FailoverRecord]) before it acts, so
// every step is idempotent and running the command again resumes:
//
//  1. maintenance on (every secondary mirrors it within milliseconds);
//  2. drain: no push in flight on the primary's Tracker. Pushes sent to a
//     secondary are proxied here, so they count here too; a secondary has
//     no write of its own (replication is not a push);
//  3. NODE's last report says 0 pending and 0 failed (LFS objects too), its
//     verified copies give the digest of the primary's repositories read
//     now ([VerifiedDigest]), the same access data, and its own geo.yaml
//     lists this site and every other secondary; every other secondary is
//     connected. [Primary.CheckTarget] decides;
//  4. promotion: the status answer to NODE carries an order (a token of
//     scope "promote", signed with the secret shared with NODE, for epoch
//     +1 and NODE's name). NODE persists its role (primary, still in
//     maintenance) and presents the new term on its next poll, which
//     demotes this site ([Guard.Observe]); NODE's next answer acknowledges
//     it and NODE restarts its gate as the primary. The other secondaries'
//     answers then carry the new term and NODE's URL (geo.yaml "url"),
//     signed with their own secrets (scope "announce"); each persists
//     {follow: URL} in its role file and restarts as NODE's secondary. This
//     site writes the same for itself and restarts as NODE's secondary.
//     A gate's role switch is an in-process restart of the whole gate on
//     the same addresses (graceful, like a SIGTERM); the role file's
//     "follow" overrides the --geo-* flags at every later start, so a
//     restart by hand with the old flags also follows NODE;
//  5. NODE reopens by itself once every secondary in its geo.yaml has
//     presented the new term (the old primary among them), unless
//     --keep-maintenance; the old primary's command waits until its mirrored
//     state shows it.
//
// At no moment do two sites accept pushes: steps 1-3 run with maintenance
// on; from step 4 NODE is in maintenance until every site has confirmed its
// term, and this site refuses pushes from its demotion on. A run that
// stops (timeout, failure, Ctrl-C: the request's context) leaves
// maintenance on and one primary, and says how to resume; --abort turns
// maintenance back to what it was and drops the record, but only before
// step 4 (from there NODE may already be primary). A second failover to
// another node while one is recorded is refused; two at once are refused
// (one runs per gate).
package geo
