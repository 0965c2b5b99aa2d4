package gitgate

import "testing"

// The identifications below are what the clients sent to a gate in the
// clienttest package (see the README's "Git clients" section).
func TestRefusalChannelFor(t *testing.T) {
	tests := []struct {
		client    string
		transport Transport
		id        string
		want      RefusalChannel
	}{
		{"git", TransportHTTP, "git/2.39.5", ChannelGitLab},
		{"git for Windows", TransportHTTP, "git/2.45.1.windows.1", ChannelGitLab},
		{"Apple git", TransportHTTP, "git/2.39.3 (Apple Git-145)", ChannelGitLab},
		{"libgit2 (pygit2)", TransportHTTP, "git/2.0 (libgit2 1.5.0)", ChannelProtocol},
		{"libgit2, other case", TransportHTTP, "git/1.0 (LibGit2 0.28)", ChannelProtocol},
		{"dulwich", TransportHTTP, "git/dulwich/0.21.2", ChannelProtocol},
		{"JGit", TransportHTTP, "JGit/4.11.9.201909030838-r", ChannelProtocol},
		{"go-git", TransportHTTP, "go-git/5.x", ChannelProtocol},
		{"isomorphic-git in Node.js (no User-Agent)", TransportHTTP, "", ChannelProtocol},
		{"isomorphic-git in a browser", TransportHTTP, "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0", ChannelProtocol},
		{"unknown client", TransportHTTP, "SomeIDE/3.1", ChannelProtocol},
		{"curl", TransportHTTP, "curl/7.88.1", ChannelGitLab},
		{"Wget", TransportHTTP, "Wget/1.21.3", ChannelGitLab},
		{"Go net/http", TransportHTTP, "Go-http-client/1.1", ChannelGitLab},
		{"python-requests", TransportHTTP, "python-requests/2.28.1", ChannelGitLab},
		{"Geo secondary", TransportHTTP, "gitgate-geo/eu", ChannelGitLab},
		{"bare git/", TransportHTTP, "git/", ChannelProtocol},
		{"git lookalike", TransportHTTP, "Git/2.39.5", ChannelProtocol},

		{"OpenSSH (git, dulwich)", TransportSSH, "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3", ChannelGitLab},
		{"OpenSSH for Windows", TransportSSH, "SSH-2.0-OpenSSH_for_Windows_8.1", ChannelGitLab},
		{"plink", TransportSSH, "SSH-2.0-PuTTY_Release_0.78", ChannelGitLab},
		{"TortoisePlink", TransportSSH, "SSH-2.0-TortoisePlink_Release_0.78", ChannelGitLab},
		{"JSch (JGit)", TransportSSH, "SSH-2.0-JSCH-0.1.54", ChannelProtocol},
		{"Apache MINA (JGit 5.2+)", TransportSSH, "SSH-2.0-APACHE-SSHD-2.12.0", ChannelProtocol},
		{"Go (go-git)", TransportSSH, "SSH-2.0-Go", ChannelProtocol},
		{"libssh2 (libgit2)", TransportSSH, "SSH-2.0-libssh2_1.10.0", ChannelProtocol},
		{"paramiko (dulwich)", TransportSSH, "SSH-2.0-paramiko_3.1.0", ChannelProtocol},
		{"no version", TransportSSH, "", ChannelProtocol},
		{"OpenSSH without its underscore", TransportSSH, "SSH-2.0-OpenSSH", ChannelProtocol},

		{"HTTP agent on SSH", TransportSSH, "git/2.39.5", ChannelProtocol},
		{"SSH version on HTTP", TransportHTTP, "SSH-2.0-OpenSSH_9.2p1", ChannelProtocol},
		{"hook", TransportHook, "git/2.39.5", ChannelProtocol},
	}
	for _, tt := range tests {
		t.Run(tt.client, func(t *testing.T) {
			if got := RefusalChannelFor(tt.transport, tt.id); got != tt.want {
				t.Fatalf("RefusalChannelFor(%s, %q) = %v, want %v", tt.transport, tt.id, got, tt.want)
			}
		})
	}
}

// FuzzRefusalChannelFor: every identification gets one of the two
// channels, and ChannelGitLab only what git's own clients send.
func FuzzRefusalChannelFor(f *testing.F) {
	for _, s := range []string{"git/2.39.5", "git/2.0 (libgit2 1.5.0)", "SSH-2.0-OpenSSH_9.2p1", "SSH-2.0-Go", "", "\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		for _, tr := range []Transport{TransportHTTP, TransportSSH, TransportHook} {
			switch got := RefusalChannelFor(tr, id); got {
			case ChannelProtocol:
			case ChannelGitLab:
				if tr == TransportHook || (tr == TransportHTTP && !isGitUserAgent(id) && !isPlainHTTPClient(id)) || (tr == TransportSSH && !isGitSSHClient(id)) {
					t.Fatalf("RefusalChannelFor(%s, %q) = %v", tr, id, got)
				}
			default:
				t.Fatalf("RefusalChannelFor(%s, %q) = %d: not a channel", tr, id, got)
			}
		}
	})
}
