// Package access holds who may use the gate and what they may do: users,
// their SSH keys and access tokens, and the rules that grant read or write on
// repositories. All of it lives in one declarative YAML file,
// <data-dir>/access.yaml, that admins may edit by hand or through the
// "gitgate user", "gitgate token" and "gitgate access" commands.
//
// The pieces:
//   - [File] is the editable content of the file; [ParseFile] reads it
//     strictly and names the file and line of every problem, [File.Marshal]
//     writes it back, and the File methods make the edits the CLI offers.
//   - [Store] reads and rewrites the file safely for the CLI.
//   - [Snapshot] is a validated, compiled, read-only view that answers the
//     questions the gate asks on every request without I/O: [Snapshot.Permission],
//     [Snapshot.AuthenticateToken] and [Snapshot.UserByKey].
//   - [Live] is the server's view: it keeps the current Snapshot and swaps
//     in a new one whenever the file changes, keeping the last good one when
//     an edit is invalid.
//   - [ParseCredentials] reads credentials from HTTP headers and [Limiter]
//     slows down clients that keep failing to sign in.
//
// # The access file
//
// An example (testdata/example.yaml, checked by the tests):
//
//	# An access file, <data-dir>/access.yaml.
//	users:
//	  - name: alice
//	    admin: true                 # admins may read and write everything
//	    keys:                       # authorized_keys lines, without options
//	      - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINAd/ZdNQX+7xgXI0O3dBj/U4r4u6Qku8lIDYTeKC3yO alice@laptop
//	  - name: bob
//	    tokens:                     # made by "gitgate token create"
//	      - id: 3f9a1c2b
//	        name: ci
//	        sha256: 2ca11652b57671aac374fac543b7d194be8ec614bbec96bebb8ba12c206dd900
//	        created: 2025-05-01T10:00:00Z
//	        expires: 2026-05-01     # midnight UTC
//	rules:
//	  - pattern: "**"               # quote patterns that start with '*'
//	    signed_in: read             # every user in this file
//	  - pattern: group/*
//	    write: [bob]
//	    anonymous: read             # everyone, signed in or not
//	  - pattern: group/secret       # replaces the rules above for this repository
//	    read: [bob]
//
// A user has a name, may be an admin, and has SSH keys (authorized_keys
// lines without options: ed25519, ecdsa, their FIDO "sk-" variants, or rsa
// of at least 2048 bits) and access tokens. The file stores only the SHA-256
// of a token's secret; a token may have a name, an expiry and a revocation
// time, and is identified by a short id.
//
// A rule grants access on the repositories its pattern matches: "read" and
// "write" list users, signed_in grants a level to every user in the file, and
// anonymous grants a level to everyone, signed in or not. Patterns that start
// with "*" must be quoted in YAML.
//
// WARNING: "anonymous: write" lets anyone who can reach the gate push
// without signing in. Nothing ever implies it; it exists only where it is
// written out, and every load of such a file logs a warning.
//
// The file is parsed strictly: unknown fields, duplicate users, keys, tokens
// or patterns, weak keys and malformed values are errors that name the file
// and line. A rule that names a user the file does not define is accepted
// with a warning and grants that name nothing, so that deleting a user by
// hand takes effect even if a rule still mentions them. A missing file means
// no users and no rules, so everything is denied.
//
// # Which rule applies
//
// See [Snapshot.Permission].
package access
