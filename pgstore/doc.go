// Package pgstore keeps a site's shared state in PostgreSQL, so that several
// gates behind a load balancer enforce one maintenance state and one set of
// users, keys, tokens and rules.
//
// It implements the same seams as the data-dir files: [DB] is a
// gitgate.Store (Load, Apply, Reset, Mirror) for the maintenance state, an
// access.Document for the access data, an audit.Sink for the audit log and a
// gitgate.Registry for the operations in flight. No transport, policy or CLI
// code knows which back end is in use.
//
// Design:
//   - Schema migrations are SQL files embedded in the binary, applied in
//     order by [Migrate] under an advisory lock, with the schema's version
//     in table schema_version. [Open] refuses a database whose schema is
//     older or newer than this binary knows.
//   - Every change to the state or the access document fires NOTIFY from a
//     trigger, in the changing transaction. [Watcher] holds one dedicated
//     connection that LISTENs; on a lost connection it reconnects with
//     backoff and re-reads everything, so a notification sent while it was
//     away is never missed. A notification is only a wake-up: the gate
//     re-reads what changed from the tables. Its payload (the new state
//     since schema 3) is not trusted, because any role that may connect
//     may NOTIFY on any channel without a privilege on the tables; taking
//     it let such a role turn maintenance off on every gate.
//   - The hooks of a push a gate runs ask that gate ([HookGate], over a
//     Unix socket with a per-push secret), which answers from memory
//     (pre-receive) or runs the ref fence's transaction on its pool
//     (reference-transaction), holding the rows for as long as the push's
//     git process lives: see hookgate.go and fence.go. Hooks of pushes
//     through other servers connect to the database themselves.
//   - Stale bound: [StateView] is what the gate's LiveState loads. It
//     remembers when it last read the database; while the database is
//     unreachable it answers the last known state until that is older than
//     the bound, then an error wrapping [ErrStale], and the policy refuses
//     pushes (fail closed) while clones go on. Access data stays at its last
//     good version.
//   - Operations in flight: each gate upserts its running pushes with an
//     expiry a few heartbeats ahead and deletes them when they end; a gate
//     that dies leaves rows that expire by themselves.
//   - Geo on a database site (schemas 4 to 6, geo.go, role.go): the
//     primary site's registry of secondaries (names, secret fingerprints,
//     the newest contact any gate heard, when a gate last listed the node
//     in its geo.yaml) in geo_nodes, shared by its gates and read back by
//     each every heartbeat, so "geo status" on any gate shows the site's
//     view, with the secrets left in each gate's files; rows of nodes no
//     gate has listed for a minute are pruned, so a rolling change of
//     geo.yaml never deletes a row another gate still serves; the site's
//     role and failover term in geo_role, whose epoch never goes down,
//     behind package geo's RoleStore seam ([RoleStore]) and announced by
//     NOTIFY so every gate's Guard re-reads it; and [Elector], an advisory
//     lock election so that one gate of a secondary site follows and
//     replicates while the others get the mirrored state through the
//     database. See geo.go for the design and what is wired into the
//     gate.
//   - A Geo secondary site on a database (schema 5, geo_secondary.go): the
//     elected gate writes the primary's state (same versions, never
//     stepped back but on the primary's own reset), the replicated access
//     data and its follower's status (table geo_secondary) through its
//     [Lease]: over the very connection that holds the advisory lock, so
//     that a gate that lost the lock can write nothing, even before it
//     notices. Every gate reads the status row, with its age by the
//     database's clock, to say whether the site's follower is connected.
//     Geo secrets stay in each gate's files.
//   - The password of a database URL never reaches a log or an error: see
//     [Redact].
package pgstore
