package httpgit

import (
	"bufio"
	"errors"
	"io"
	"log/slog"
	"net/http"

	"github.com/go-git/go-git/v5/plumbing/format/pktline"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp/capability"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp/sideband"

	"github.com/gitgate/gitgate/gitgate"
)

// statusFor maps a refusal to its HTTP status.
func statusFor(kind gitgate.RefusalKind) int {
	switch kind {
	case gitgate.RefusedUnauthenticated:
		return http.StatusUnauthorized
	case gitgate.RefusedNotFound:
		return http.StatusNotFound
	}
	return http.StatusForbidden
}

// refuse answers a refused request. On the ref advertisement (and for every
// refusal but a push's) it is an HTTP error whose text/plain body git shows
// as "remote: <message>". A push whose POST arrives after its advertisement
// was allowed (maintenance switched on in between) is answered in the Git
// protocol instead, because git does not show the body of a failed POST:
// each ref is rejected and the message goes out on the progress channel.
func (s *Server) refuse(w http.ResponseWriter, r *http.Request, rt route, refusal *gitgate.Refusal, log *slog.Logger) {
	status := statusFor(refusal.Kind)
	if rt.endpoint == endpointRPC && rt.service == gitgate.ReceivePack && status == http.StatusForbidden {
		if err := refuseReceivePack(w, r, refusal.Message); err == nil {
			return
		} else if !errors.Is(err, errNoReport) {
			log.Warn("could not refuse the push in the Git protocol; answering with an HTTP error", "err", err)
		}
	}
	if status == http.StatusUnauthorized {
		askForCredentials(w)
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	noCache(w.Header())
	w.WriteHeader(status)
	io.WriteString(w, refusal.Message+"\n")
}

var errNoReport = errors.New("client asked for no status report")

// refuseReceivePack reads the push's commands, discards the pack that
// follows, and answers with a report that rejects every ref with the
// refusal message shown on git's progress channel ("remote: ..."). git's
// probe request (see [isProbe]) is answered as git-http-backend answers it,
// so that the real request follows and gets that report. It writes nothing
// and returns an error when the request cannot be answered that way.
func refuseReceivePack(w http.ResponseWriter, r *http.Request, msg string) error {
	body, err := requestBody(r)
	if err != nil {
		return err
	}
	defer body.Close()
	br := bufio.NewReader(body)
	if isProbe(br) {
		answerProbe(w)
		return nil
	}
	req := packp.NewReferenceUpdateRequest()
	if err := req.Decode(br); err != nil {
		return err
	}
	caps := req.Capabilities
	if !caps.Supports(capability.ReportStatus) && !caps.Supports("report-status-v2") {
		return errNoReport
	}
	// The client sends the pack in the same request; read it to the end so
	// that it then reads our answer instead of failing on a reset connection.
	if _, err := io.Copy(io.Discard, br); err != nil {
		return err
	}

	h := w.Header()
	h.Set("Content-Type", "application/x-git-receive-pack-result")
	noCache(h)
	// git shows each ref as "! [remote rejected] <ref> (<reason>)".
	reason := "refused"
	if msg == gitgate.MaintenanceMessage {
		reason = "read-only maintenance mode"
	}
	report := &packp.ReportStatus{UnpackStatus: "ok"}
	for _, c := range req.Commands {
		report.CommandStatuses = append(report.CommandStatuses, &packp.CommandStatus{ReferenceName: c.Name, Status: reason})
	}

	band := sideband.Sideband
	switch {
	case caps.Supports(capability.Sideband64k):
		band = sideband.Sideband64k
	case !caps.Supports(capability.Sideband):
		return report.Encode(w) // no progress channel: the reason goes in the report
	}
	mux := sideband.NewMuxer(band, w)
	if _, err := mux.WriteChannel(sideband.ProgressMessage, []byte(msg+"\n")); err != nil {
		return err
	}
	if err := report.Encode(mux); err != nil {
		return err
	}
	return pktline.NewEncoder(w).Flush()
}
