// Package gitgate is the core of the gate: the nouns every transport shares.
//
// It owns the Git services a client may ask for ([Service]), one client request
// ([Operation]), the read-only maintenance [State] and the [Store] that keeps
// it, the [Policy] that turns an operation into a [Decision], the repository
// [Resolver] that maps hostile request paths to bare repositories, and the
// [Runner] that starts the real git binary for a service, and
// [RefusalChannelFor], which picks how a refusal reaches each kind of Git
// client (the policy has decided before). The SSH and HTTP front
// ends translate their protocol into these types and stream bytes; they make no
// decisions of their own.
package gitgate
