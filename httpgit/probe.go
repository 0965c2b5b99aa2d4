package httpgit

import (
	"bufio"
	"io"
	"net/http"
)

// probeBody is the whole body of git's probe request: before a push larger
// than http.postBuffer (1 MiB by default), git sends a POST to
// git-receive-pack holding only a flush packet, to find out whether the
// server will take the real request (sent chunked) before streaming it. A
// failed probe makes git print "RPC failed; HTTP 403" and "Everything
// up-to-date", and nothing of the server's message.
const probeBody = "0000"

// isProbe reports whether br holds exactly git's probe request. It reads
// at most len(probeBody)+1 bytes (Peek: they stay in br).
func isProbe(br *bufio.Reader) bool {
	p, err := br.Peek(len(probeBody) + 1)
	return err == io.EOF && string(p) == probeBody
}

// answerProbe answers git's probe request as git-http-backend does (run it
// with a "0000" body: no Status header, so 200, the no-cache headers, the
// result content type and an empty body). The real request that follows
// is the one that is refused, in the Git protocol, so that the user sees
// the message and the rejected refs.
func answerProbe(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Type", "application/x-git-receive-pack-result")
	noCache(h)
	w.WriteHeader(http.StatusOK)
}
