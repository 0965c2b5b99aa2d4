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
// no HTTP token.
package lfs
