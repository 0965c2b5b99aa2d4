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
package geo
