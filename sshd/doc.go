// Package sshd is the SSH front end of the gate: Git over SSH as
// "git clone ssh://git@host:2222/group/name.git" and the scp-like
// "git@host:group/name.git" speak it, built on github.com/gliderlabs/ssh.
//
// # Authentication
//
// Public keys only, looked up in a [KeyLookup] on every attempt, so that a
// key removed from the access file is refused from the next connection on.
// The user a session acts as is the owner of the key whose signature the
// server verified (golang.org/x/crypto/ssh's VerifiedPublicKeyCallback), not
// of a key the client merely offered; the owner is looked up again when each
// session starts. The SSH user name is ignored ("git" by convention).
//
// # Sessions
//
// A session accepts a GIT_PROTOCOL environment request (protocol v2) and one
// exec request, parsed strictly by [ParseCommand]; it never reaches a shell.
// It then reads top to bottom: authenticate, parse, resolve the repository,
// ask the policy, then run the real git binary and stream, or print the
// refusal. Other environment variables are refused and ignored, not fatal:
// Debian's default ssh_config sends LANG and LC_*. Pty, X11 and agent
// requests, subsystems, port forwarding and channels other than "session"
// are refused.
//
// What the client sees:
//
//   - a push in read-only maintenance mode (or while the maintenance state
//     cannot be read): GitLab's box around the message on stderr, exit
//     status 1; every line starts with "remote: " as gitlab-shell's do;
//   - any other refusal of the policy (not found, not allowed to push): one
//     line, "remote: ERROR: <message>", exit status 1, the same for a missing
//     repository and one the user may not see;
//   - a push refused by the policy, from an SSH client other than the ones
//     git runs ([gitgate.RefusalChannelFor] decides from its version
//     string): the above, and "ERR <message>" as a packet on stdout, which
//     the Git libraries report; the close of the channel is left to the
//     client;
//   - a command that is not a git service, or a malformed or invalid path:
//     one fixed line (the input is never echoed), exit status 128;
//   - no command ("ssh git@host"): "Welcome to gitgate, @<user>!" on stdout,
//     exit status 0, so that users can test their key.
//
// # Limits
//
// A login grace time, an idle timeout on session data, keepalives that end
// connections (and their git processes) whose client stopped answering, and
// caps on the sessions per connection and in total. A session over a cap is
// refused when its channel opens, with the reason. [Server.Shutdown] stops
// accepting, lets sessions finish until its context ends, then cancels them.
package sshd
