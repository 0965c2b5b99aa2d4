package httpgit

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-git/go-git/v5/plumbing/format/pktline"

	"github.com/gitgate/gitgate/gitgate"
)

// statusFor maps a refusal to its HTTP status.
func statusFor(kind gitgate.RefusalKind) int {
	switch kind {
	case gitgate.RefusedUnauthenticated:
		return http.StatusUnauthorized
	case gitgate.RefusedNotFound:
		return http.StatusNotFound
	case gitgate.RefusedBusy:
		return http.StatusServiceUnavailable
	}
	return http.StatusForbidden
}

// refuse answers a refused request. On the ref advertisement (and for every
// refusal but a push's) it is an HTTP error whose text/plain body git shows
// as "remote: <message>"; a push's advertisement refused with 403 goes to
// clients other than git in the Git protocol instead, as an ERR packet
// (gitgate.RefusalChannelFor decides which). A push whose POST arrives
// after its advertisement was allowed (maintenance switched on in between)
// is answered in the Git protocol, because git does not show the body of a
// failed POST: each ref is rejected and the message goes out on the
// progress channel. It reports whether the request was git's probe (see
// [isProbe]), which is answered as allowed and is no refused operation.
func (s *Server) refuse(w http.ResponseWriter, r *http.Request, rt route, refusal *gitgate.Refusal, log *slog.Logger) (probe bool) {
	status := statusFor(refusal.Kind)
	if rt.endpoint == endpointRPC && rt.service == gitgate.ReceivePack && status == http.StatusForbidden {
		if probe, err := s.refuseReceivePack(w, r, refusal.Message); err == nil {
			return probe
		} else if !errors.Is(err, errNoReport) {
			log.Warn("could not refuse the push in the Git protocol; answering with an HTTP error", "err", err)
		}
	}
	if rt.endpoint == endpointInfoRefs && rt.service == gitgate.ReceivePack && status == http.StatusForbidden {
		ch := gitgate.RefusalChannelFor(gitgate.TransportHTTP, r.UserAgent())
		log.Info("push refused at its ref advertisement", "user_agent", r.UserAgent(), "git_protocol", r.Header.Get("Git-Protocol"), "channel", ch)
		if ch == gitgate.ChannelProtocol {
			writeAdvertisementRefusal(w, refusal.Message)
			return false
		}
	}
	if status == http.StatusUnauthorized {
		askForCredentials(w)
	}
	writeRefusal(w, status, refusal.Message)
	return false
}

// writeAdvertisementRefusal answers a push's ref advertisement with the
// refusal inside the Git protocol, for the clients that do not show the
// body of an HTTP error (see [gitgate.ChannelProtocol]): the service line
// that starts every smart HTTP advertisement, then "ERR <msg>" where the
// first ref would be, and no ref. The client stops there, before it sends
// any pack data, and reports "remote error: <msg>" or alike.
func writeAdvertisementRefusal(w http.ResponseWriter, msg string) {
	h := w.Header()
	h.Set("Content-Type", "application/x-git-receive-pack-advertisement")
	noCache(h)
	w.WriteHeader(http.StatusOK)
	enc := pktline.NewEncoder(w)
	enc.Encodef("# service=%s\n", gitgate.ReceivePack)
	enc.Flush()
	enc.Encodef("ERR %s", msg)
}

// writeRefusal writes msg as a text/plain error answer.
func writeRefusal(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	noCache(w.Header())
	w.WriteHeader(status)
	io.WriteString(w, msg+"\n")
}

var errNoReport = errors.New("client asked for no status report")

// pushCommands is what a refusal needs of a push's request: the
// capabilities of its first command and the names of (at most
// reportRefsMax of) its refs.
type pushCommands struct {
	caps map[string]bool
	refs []string
}

// readPushCommands reads the command section of a push (pkt-lines up to the
// flush) one line at a time, keeping only what a refusal needs: its memory
// does not grow with the number of commands.
func readPushCommands(r *bufio.Reader) (*pushCommands, error) {
	cmds := &pushCommands{}
	var buf [pktline.MaxPayloadSize]byte
	for {
		line, flush, err := readPktLine(r, buf[:])
		if err != nil {
			return cmds, err
		}
		if flush {
			return cmds, nil
		}
		line = bytes.TrimSuffix(line, []byte("\n"))
		if cmd, caps, ok := bytes.Cut(line, []byte{0}); ok && cmds.caps == nil {
			cmds.caps = map[string]bool{}
			for _, c := range bytes.Fields(caps) {
				name, _, _ := bytes.Cut(c, []byte("="))
				cmds.caps[string(name)] = true
			}
			line = cmd
		}
		// "<old-oid> <new-oid> <ref>"; shallow and push-cert lines are not
		// commands and are skipped.
		if f := bytes.Fields(line); len(f) == 3 && isHex(f[0]) && isHex(f[1]) && len(cmds.refs) < reportRefsMax {
			cmds.refs = append(cmds.refs, string(f[2]))
		}
	}
}

// readPktLine reads one pkt-line into buf; flush is true for a flush packet
// (or another special packet, which ends a command section as well).
func readPktLine(r io.Reader, buf []byte) (line []byte, flush bool, err error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, false, err
	}
	n, err := strconv.ParseUint(string(hdr[:]), 16, 16)
	if err != nil {
		return nil, false, fmt.Errorf("bad pkt-line length %q", hdr[:])
	}
	if n < 4 {
		return nil, true, nil
	}
	if int(n)-4 > len(buf) {
		return nil, false, fmt.Errorf("pkt-line of %d bytes is too long", n)
	}
	line = buf[:n-4]
	_, err = io.ReadFull(r, line)
	return line, false, err
}

func isHex(b []byte) bool {
	if len(b) != 40 && len(b) != 64 {
		return false
	}
	for _, c := range b {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// refuseReceivePack reads the push's commands, discards (a bounded part of)
// the pack that follows, and answers with a report that rejects the refs
// with the refusal message shown on git's progress channel ("remote: ...").
// git's probe request (see [isProbe]) is answered as git-http-backend
// answers it, so that the real request follows and gets that report.
// What it reads is bounded in bytes (refusedBodyMax, decompressed) and time
// (refusedBodyTime, and the idle timeout); past either it answers anyway
// and closes the connection. It writes nothing and returns an error when
// the request cannot be answered that way; probe reports that the request
// was git's probe.
func (s *Server) refuseReceivePack(w http.ResponseWriter, r *http.Request, msg string) (probe bool, err error) {
	in, err := s.newBody(w, r, refusedBodyMax)
	if err != nil {
		return false, err
	}
	defer in.Close()
	in.deadline = time.Now().Add(refusedBodyTime)
	defer in.rc.SetReadDeadline(time.Time{})

	br := bufio.NewReaderSize(in, 64<<10)
	if isProbe(br) {
		answerProbe(w)
		return true, nil
	}
	cmds, err := readPushCommands(br)
	if err != nil && cmds.caps == nil {
		return false, err
	}
	if !cmds.caps["report-status"] && !cmds.caps["report-status-v2"] {
		return false, errNoReport
	}
	// The client sends the pack in the same request; read it to the end
	// (within the bounds) so that it then reads our answer instead of
	// failing on a reset connection.
	if err == nil {
		_, err = io.Copy(io.Discard, br)
	}
	if err != nil {
		w.Header().Set("Connection", "close") // the rest of the body is not read
	}

	h := w.Header()
	h.Set("Content-Type", "application/x-git-receive-pack-result")
	noCache(h)
	// From here on the answer is written; a failure to write it means the
	// client is gone, and there is nothing else to say.
	writePushRefusal(w, cmds, msg)
	return false, nil
}

// writePushRefusal answers a push in the Git protocol: the message on the
// progress band, where git shows it as "remote: <msg>", and a report that
// rejects each of cmds' refs, which git shows as
// "! [remote rejected] <ref> (<reason>)". Without a progress band only the
// report is sent.
func writePushRefusal(w io.Writer, cmds *pushCommands, msg string) {
	reason := "refused"
	switch msg {
	case gitgate.MaintenanceMessage:
		reason = "read-only maintenance mode"
	case gitgate.BusyMessage:
		reason = "server busy"
	}
	var report bytes.Buffer
	enc := pktline.NewEncoder(&report)
	enc.Encodef("unpack ok\n")
	for _, ref := range cmds.refs {
		enc.Encodef("ng %s %s\n", ref, reason)
	}
	enc.Flush()

	max := 0 // payload per packet of the progress band; 0: no band
	switch {
	case cmds.caps["side-band-64k"]:
		max = pktline.MaxPayloadSize - 1
	case cmds.caps["side-band"]:
		max = 1000 - 4 - 1
	}
	if max == 0 {
		w.Write(report.Bytes()) // no progress channel: the reason goes in the report
		return
	}
	writeBand(w, max, 2, []byte(msg+"\n"))
	writeBand(w, max, 1, report.Bytes())
	io.WriteString(w, "0000")
}

// A push can also be stopped after git has read it: maintenance switched on
// between its pre-receive check and its ref update makes the
// reference-transaction hook abort the update, and git 2.39 then dies
// without a report ("ref updates aborted by hook"), its hook's words on its
// stderr, which HTTP does not carry. The gate keeps the start of every
// push's request (its commands) to answer such a push itself, as it answers
// a push refused before git ran.

// pushPrefixMax bounds what is kept of a push's request: the commands of
// any real push fit (about 100 bytes a ref); the pack that follows is not
// kept.
const pushPrefixMax = 64 << 10

// prefixRecorder passes a request body through to git and keeps its first
// pushPrefixMax bytes.
type prefixRecorder struct {
	r io.Reader

	mu  sync.Mutex
	buf []byte
}

func (p *prefixRecorder) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	if n > 0 {
		p.mu.Lock()
		if room := pushPrefixMax - len(p.buf); room > 0 {
			p.buf = append(p.buf, b[:min(n, room)]...)
		}
		p.mu.Unlock()
	}
	return n, err
}

// commands parses the push's commands from what was kept.
func (p *prefixRecorder) commands() *pushCommands {
	p.mu.Lock()
	defer p.mu.Unlock()
	cmds, _ := readPushCommands(bufio.NewReader(bytes.NewReader(p.buf)))
	return cmds
}

// refusedAtCommit reports whether a receive-pack that failed was stopped by
// the reference-transaction hook for maintenance, from its stderr.
func refusedAtCommit(stderr string) bool {
	return strings.Contains(stderr, gitgate.MaintenanceMessage)
}

// writeBand writes p on sideband channel band in packets of at most max
// bytes of payload.
func writeBand(w io.Writer, max int, band byte, p []byte) error {
	for len(p) > 0 {
		n := min(len(p), max)
		if _, err := fmt.Fprintf(w, "%04x%c%s", 4+1+n, band, p[:n]); err != nil {
			return err
		}
		p = p[n:]
	}
	return nil
}
