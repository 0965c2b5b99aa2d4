// Package lfs serves Git LFS through the gate: the batch API, the basic
// transfer adapter's object endpoints, the locking API, and the answer to
// "git-lfs-authenticate" over SSH.
//
// The design follows the gate's own: every request is authenticated the way
// Git requests are (the same users and tokens), its repository is resolved
// and decided by the one gitgate.Policy.Open step on the canonical name, and
// only then does this package touch storage. An LFS request is mapped to a
// gitgate.Service (LFSDownload for reads, LFSUpload and LFSLock for writes),
// so the policy's rules (visibility, scoped tokens, anonymous writes,
// maintenance mode) apply unchanged: in maintenance, downloads and lock
// listing work; uploads and lock changes are refused with the maintenance
// message before any object byte is read.
//
// Objects are content-addressed files under <data-dir>/lfs/objects/ab/cd/<oid>,
// written to a temporary file in the same file system while the SHA-256 and
// the size are checked, then fsynced and renamed: a partial or wrong upload
// never becomes an object. An object is served through a repository only when
// it is linked to it (lfs/links/<repo key>/<oid>); a link is made only by an
// upload of the full content through that repository, so guessing an oid
// gives nothing.
//
// The action hrefs in a batch answer carry a short-lived Authorization header
// signed with a per-gate secret (lfs/secret in the data dir), bound to user,
// repository, operation and object. git-lfs-authenticate answers a header of
// the same kind bound to user, repository and operation, so an SSH user needs
// no HTTP token. A header names the credential it was issued on (the SSH
// key or the access token, gitgate.User.Credential), and every use checks it
// against the live access data ([UserLookup]) and decides with the policy
// again, so a header dies with its key, token, user or access. The hrefs
// point at --external-url, or else at the address the request arrived on,
// never at a host named only by the request (see baseurl.go).
//
// # git-lfs-transfer
//
// [Server.SSHTransfer] serves the pure-SSH protocol that git-lfs tries
// first: the same policy, store, limits and metrics over pkt-lines on the
// SSH channel, every read bounded, every write decided when it comes.
//
// # Geo
//
// On a Geo secondary (Config.Primary set) the objects are served from the
// site's own store, which Geo replication fills (geo.Replicator copies each
// repository's objects after its refs, through [Store.Put], so a copy is
// checked against its oid and size exactly as an upload is). Writes go to
// the primary: a request the secondary's own policy allows that uploads
// (batch upload, object PUT, verify) or touches locks (all lock
// endpoints, listing included: the locks live on the primary) is handed,
// with its request body as it came, to the [PrimaryProxy], which sends it
// to the same path on the primary with a push token for the user. The
// primary authenticates that token as the user, decides again with its own
// access rules and maintenance state, and its answer reaches the client
// unchanged; its batch answers point at the primary's own object
// endpoints (with its signed headers), so object bytes go to the primary
// directly and never through the secondary. So a secondary with a stale
// view of maintenance cannot let an upload through, and git-lfs shows the
// primary's refusal message. An object the secondary has not copied yet is
// fetched from the primary ([Origin]) when a client asks for it, streamed
// to the client and into the store; objects the primary no longer links to a
// repository are unlinked here ([Store.Prune]) and objects no repository
// links go to a trash emptied after a retention ([Store.Sweep]). A proxy of
// every object byte would work too,
// but would double the traffic of every upload and need the secondary to
// verify the primary's signed headers; pointing the client at the primary
// is what the batch API's hrefs are for. On the primary, [Config.OnStored]
// records a change for each stored object so that secondaries copy it at
// once.
package lfs
