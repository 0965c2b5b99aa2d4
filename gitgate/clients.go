package gitgate

import "strings"

// RefusalChannel is the way a refusal that comes before any pack data (the
// answer to a push's ref advertisement) reaches a Git client. Which one a
// client gets only changes how the words travel: the decision to refuse is
// the policy's, made before and whatever the client says it is.
type RefusalChannel int

const (
	// ChannelGitLab is GitLab's own: over HTTP an error status (403) with
	// a text/plain body, which git prints as "remote: <message>"; over SSH
	// the message on stderr (the box, for maintenance) and exit status 1.
	// It is what git shows byte for byte as GitLab does, and what admins
	// and runbooks know.
	ChannelGitLab RefusalChannel = iota + 1
	// ChannelProtocol carries the message in the Git protocol: an "ERR
	// <message>" packet where the ref advertisement would start, which
	// every client that speaks the protocol reports as an error with the
	// message (libgit2, dulwich, JGit, go-git, isomorphic-git; git itself
	// prints "fatal: remote error: <message>"). Over HTTP the answer is 200
	// with the advertisement's content type; over SSH the stderr text of
	// ChannelGitLab is written too, and the exit status is still 1.
	ChannelProtocol
)

// String returns "gitlab" or "protocol".
func (c RefusalChannel) String() string {
	if c == ChannelGitLab {
		return "gitlab"
	}
	return "protocol"
}

// RefusalChannelFor decides how a refusal reaches the client of a push, from
// what it tells about itself: on TransportHTTP its User-Agent header, on
// TransportSSH its SSH version string (e.g. "SSH-2.0-OpenSSH_9.2p1").
//
// ChannelGitLab goes to git's own client: over HTTP a User-Agent of
// "git/<version>" (libgit2's "git/2.0 (libgit2 ...)", dulwich's
// "git/dulwich/..." and isomorphic-git's "git/isomorphic-git@..." do not
// count), over SSH the OpenSSH and PuTTY clients that git runs. It also
// goes to HTTP tools that are not Git clients and read the status code,
// not the Git protocol (curl, Wget, Go's and Python's HTTP libraries, a Geo
// secondary's requests): to them a 200 answer would look like success, and
// admins' probes expect GitLab's 403. Every other client, and any client
// the gate cannot tell, gets ChannelProtocol: the ERR packet is read by
// everything that speaks the protocol, git included, so it is the safe
// default for a Git client the gate does not know. isomorphic-git is one:
// it sends no User-Agent in Node.js, and the browser's in a browser.
func RefusalChannelFor(t Transport, client string) RefusalChannel {
	switch t {
	case TransportHTTP:
		if isGitUserAgent(client) || isPlainHTTPClient(client) {
			return ChannelGitLab
		}
	case TransportSSH:
		if isGitSSHClient(client) {
			return ChannelGitLab
		}
	}
	return ChannelProtocol
}

// isGitUserAgent reports whether ua is git's own User-Agent: "git/"
// followed by a version number, as git sends it ("git/2.39.5",
// "git/2.45.1.windows.1", "git/2.39.3 (Apple Git-145)"), and not libgit2's
// look-alike "git/2.0 (libgit2 1.5.0)".
func isGitUserAgent(ua string) bool {
	v, ok := strings.CutPrefix(ua, "git/")
	if !ok || v == "" || v[0] < '0' || v[0] > '9' {
		return false
	}
	return !strings.Contains(strings.ToLower(ua), "libgit2")
}

// plainHTTPClients are the User-Agent prefixes of HTTP tools and
// libraries that read an answer's status, not the Git protocol. A Git
// library built on one of them sends its own User-Agent (dulwich on
// urllib3, go-git on net/http).
var plainHTTPClients = []string{"curl/", "Wget/", "Go-http-client/", "python-requests/", "Python-urllib/", "HTTPie/", "gitgate-geo/"}

// isPlainHTTPClient reports whether ua is the User-Agent of an HTTP tool
// that reads status codes.
func isPlainHTTPClient(ua string) bool {
	for _, p := range plainHTTPClients {
		if strings.HasPrefix(ua, p) {
			return true
		}
	}
	return false
}

// sshClientsOfGit are the prefixes of the SSH version strings of the SSH
// clients git runs: OpenSSH (also Windows' "OpenSSH_for_Windows_..."),
// and PuTTY's plink and TortoiseGit's TortoisePlink on Windows. They pass
// the session's stderr to the user, where git shows it above its own
// "fatal: Could not read from remote repository.".
var sshClientsOfGit = []string{"SSH-2.0-OpenSSH_", "SSH-2.0-PuTTY", "SSH-2.0-TortoisePlink"}

// isGitSSHClient reports whether version is the SSH version string of a
// client that git runs.
func isGitSSHClient(version string) bool {
	for _, p := range sshClientsOfGit {
		if strings.HasPrefix(version, p) {
			return true
		}
	}
	return false
}
