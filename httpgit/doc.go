// Package httpgit serves Git's smart HTTP protocol in front of the gate's
// repositories, plus the health and readiness probes.
//
// Every Git request reads top to bottom in [Server.serveGit]: parse the
// route, authenticate, resolve the repository, ask the policy, then run git
// and stream both directions, or write the refusal. git-receive-pack is
// refused at the ref advertisement while the gate is in maintenance, before a
// client has sent any pack data; a push whose advertisement came just before
// the switch is refused when its POST arrives, with the message delivered in
// the Git protocol so the user still sees it. The refused advertisement is
// GitLab's 403 with the message as text/plain for git (which shows it), and
// an "ERR <message>" packet in a 200 advertisement for the other Git clients,
// which do not show an error's body; [gitgate.RefusalChannelFor] decides
// from the User-Agent.
package httpgit
