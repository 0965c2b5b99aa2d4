package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gitgate/gitgate/audit"
	"github.com/gitgate/gitgate/gitgate"
)

// Settings is the answer of GET and PUT /api/v4/application/settings: the
// GitLab fields this gate knows, plus gitgate's own (since, by, version, and
// the operations in flight, to tell when a drain is complete).
type Settings struct {
	ID                     int      `json:"id"`
	MaintenanceMode        bool     `json:"maintenance_mode"`
	MaintenanceModeMessage *string  `json:"maintenance_mode_message"`
	MaintenanceModeSince   *string  `json:"maintenance_mode_since"`
	MaintenanceModeBy      *string  `json:"maintenance_mode_by"`
	MaintenanceModeVersion uint64   `json:"maintenance_mode_version"`
	MaintenanceStateError  *string  `json:"maintenance_mode_state_error"`
	OperationsInFlight     InFlight `json:"operations_in_flight"`
	// SitePushesInFlight, on a gate whose site shares a database, are the
	// pushes running on every gate of the site (nil otherwise).
	SitePushesInFlight *[]SitePush `json:"site_pushes_in_flight,omitempty"`
	// SitePushesError says why the site's pushes could not be listed.
	SitePushesError *string `json:"site_pushes_in_flight_error,omitempty"`
}

// SitePush is a push running on some gate of the site.
type SitePush struct {
	Gate string `json:"gate"`
	RunningOp
}

// InFlight counts the Git operations running, and lists them.
type InFlight struct {
	Writes  int         `json:"writes"`
	Reads   int         `json:"reads"`
	Running []RunningOp `json:"running"`
}

// RunningOp is one operation in flight.
type RunningOp struct {
	Service   string    `json:"service"`
	Repo      string    `json:"repository"`
	User      string    `json:"user"`
	Transport string    `json:"transport"`
	Started   time.Time `json:"started"`
}

func (a *API) settings(ctx context.Context) Settings {
	snap := a.cfg.Live.Current()
	st := snap.State
	s := Settings{ID: 1, MaintenanceMode: st.Enabled, MaintenanceModeVersion: st.Version}
	if st.Message != "" {
		s.MaintenanceModeMessage = &st.Message
	}
	if !st.Since.IsZero() {
		since := st.Since.UTC().Format(time.RFC3339)
		s.MaintenanceModeSince = &since
	}
	if st.By != "" {
		s.MaintenanceModeBy = &st.By
	}
	if snap.Err != nil {
		msg := "the maintenance state cannot be read; pushes are refused until it is fixed"
		s.MaintenanceStateError = &msg
	}
	s.OperationsInFlight.Running = []RunningOp{}
	if a.cfg.Tracker != nil {
		s.OperationsInFlight.Writes, s.OperationsInFlight.Reads = a.cfg.Tracker.Counts()
		for _, r := range a.cfg.Tracker.InFlight() {
			s.OperationsInFlight.Running = append(s.OperationsInFlight.Running, RunningOp{
				Service: string(r.Service), Repo: r.Repo, User: r.User.String(),
				Transport: string(r.Transport), Started: r.Started.UTC(),
			})
		}
	}
	if a.cfg.SitePushes != nil {
		pushes, ok, err := a.cfg.SitePushes(ctx)
		switch {
		case err != nil:
			a.log.Warn("cannot list the site's pushes in flight", "err", err)
			msg := "the site's pushes in flight cannot be read from the database"
			s.SitePushesError = &msg
		case ok:
			if pushes == nil {
				pushes = []SitePush{}
			}
			s.SitePushesInFlight = &pushes
		}
	}
	return s
}

// writeSettings writes s with the Extra fields merged in at the top level.
func (a *API) writeSettings(ctx context.Context, w http.ResponseWriter, status int) {
	s := a.settings(ctx)
	data, _ := json.Marshal(s)
	var extra map[string]any
	if a.cfg.Extra != nil {
		extra = a.cfg.Extra()
	}
	if len(extra) > 0 {
		var m map[string]any
		json.Unmarshal(data, &m)
		for k, v := range extra {
			m[k] = v
		}
		writeJSON(w, status, m)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(append(data, '\n'))
}

func (a *API) getSettings(w http.ResponseWriter, r *http.Request) {
	a.writeSettings(r.Context(), w, http.StatusOK)
}

// badRequest is a 400 whose message names the field.
type badRequest string

func (b badRequest) Error() string { return string(b) }

func (a *API) putSettings(w http.ResponseWriter, r *http.Request) {
	user := UserFrom(r.Context())
	change, err := parseChange(r)
	var bad badRequest
	if errors.As(err, &bad) {
		writeJSON(w, http.StatusBadRequest, map[string]string{"message": string(bad)})
		return
	}
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"message": "400 Bad request - " + err.Error()})
		return
	}
	if a.cfg.ReadOnly != nil {
		if msg, ro := a.cfg.ReadOnly(); ro {
			a.log.Warn("settings change refused on a Geo secondary", "user", user.Name, "remote_addr", r.RemoteAddr)
			writeJSON(w, http.StatusForbidden, map[string]string{"message": msg})
			return
		}
	}
	old := a.cfg.Live.Current().State
	change.By = user.Name
	st, err := a.cfg.Store.Apply(r.Context(), change)
	// A fenced store that could not wait for the ref updates in flight
	// did change the state: record it, then report that.
	fenceErr := err
	if errors.Is(err, gitgate.ErrFenceIncomplete) {
		err = nil
	} else {
		fenceErr = nil
	}
	if err != nil {
		a.log.Error("settings change failed", "user", user.Name, "err", err)
		writeJSON(w, http.StatusInternalServerError, map[string]string{"message": "500 Internal Server Error"})
		return
	}
	a.cfg.Live.Reload()
	a.log.Info("maintenance state changed", "user", user.Name, "remote_addr", r.RemoteAddr,
		"enabled", st.Enabled, "message", st.Message, "version", st.Version)
	if a.cfg.Audit != nil {
		if err := a.cfg.Audit.Record(audit.Event{
			Action: "maintenance.update", Actor: user.Name, Transport: a.cfg.Transport, RemoteAddr: r.RemoteAddr,
			Old: AuditState(old), New: AuditState(st),
		}); err != nil {
			a.log.Error("audit log write failed", "err", err)
		}
	}
	if fenceErr != nil {
		a.log.Error("maintenance enabled, but ref updates may still be in flight", "user", user.Name, "err", fenceErr)
		msg := gitgate.ErrFenceIncomplete.Error()
		var timeout *gitgate.FenceTimeoutError
		if errors.As(fenceErr, &timeout) {
			msg = timeout.Summary()
		}
		writeJSON(w, http.StatusInternalServerError, map[string]string{"message": msg})
		return
	}
	a.writeSettings(r.Context(), w, http.StatusOK)
}

// AuditState is the part of a state recorded in the audit log.
func AuditState(st gitgate.State) map[string]any {
	return map[string]any{"enabled": st.Enabled, "message": st.Message, "version": st.Version}
}

// parseChange reads maintenance_mode and maintenance_mode_message from the
// query string and from a form or JSON body (the body wins).
func parseChange(r *http.Request) (gitgate.Change, error) {
	params := map[string]param{}
	for k, v := range r.URL.Query() {
		params[k] = param{text: v[len(v)-1]}
	}
	if err := readBody(r, params); err != nil {
		return gitgate.Change{}, err
	}
	var c gitgate.Change
	p, hasMode := params["maintenance_mode"]
	if hasMode {
		on, err := p.boolean()
		if err != nil {
			return c, badRequest("maintenance_mode is invalid")
		}
		c.Enabled = &on
	}
	p, hasMsg := params["maintenance_mode_message"]
	if hasMsg {
		msg, err := p.str()
		if err != nil {
			return c, badRequest("maintenance_mode_message is invalid")
		}
		if utf8.RuneCountInString(msg) > gitgate.MaxMessageLength {
			return c, badRequest(fmt.Sprintf("maintenance_mode_message is too long (maximum is %d characters)", gitgate.MaxMessageLength))
		}
		if err := gitgate.ValidateMessage(msg); err != nil {
			return c, badRequest("maintenance_mode_message is invalid")
		}
		c.Message = &msg
	}
	if !hasMode && !hasMsg {
		return c, badRequest("at least one parameter must be provided: maintenance_mode, maintenance_mode_message")
	}
	return c, nil
}

// param is one request parameter: text from a query or form, or a JSON
// value.
type param struct {
	text string
	js   json.RawMessage
}

func (p param) boolean() (bool, error) {
	s := p.text
	if p.js != nil {
		var v any
		if err := json.Unmarshal(p.js, &v); err != nil {
			return false, err
		}
		switch v := v.(type) {
		case bool:
			return v, nil
		case float64:
			s = fmt.Sprint(v)
		case string:
			s = v
		default:
			return false, errors.New("not a boolean")
		}
	}
	switch strings.ToLower(s) {
	case "true", "1":
		return true, nil
	case "false", "0":
		return false, nil
	}
	return false, errors.New("not a boolean")
}

// str returns a text parameter; JSON null clears the message.
func (p param) str() (string, error) {
	if p.js == nil {
		return p.text, nil
	}
	var v *string
	if err := json.Unmarshal(p.js, &v); err != nil {
		return "", err
	}
	if v == nil {
		return "", nil
	}
	return *v, nil
}

func readBody(r *http.Request, params map[string]param) error {
	if r.Body == nil || r.ContentLength == 0 {
		return nil
	}
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	body := http.MaxBytesReader(nil, r.Body, maxBody)
	r.Body = body
	switch ct {
	case "application/json":
		var m map[string]json.RawMessage
		dec := json.NewDecoder(body)
		if err := dec.Decode(&m); err != nil && !errors.Is(err, io.EOF) {
			return errors.New("the body is not a JSON object")
		}
		for k, v := range m {
			params[k] = param{js: v}
		}
	case "application/x-www-form-urlencoded", "":
		data, err := io.ReadAll(body)
		if err != nil {
			return errors.New("the body is too large")
		}
		form, err := url.ParseQuery(string(data))
		if err != nil {
			return errors.New("the form body cannot be parsed")
		}
		for k, v := range form {
			params[k] = param{text: v[len(v)-1]}
		}
	case "multipart/form-data":
		if err := r.ParseMultipartForm(maxBody); err != nil {
			return errors.New("the form body cannot be parsed")
		}
		for k, v := range r.MultipartForm.Value {
			params[k] = param{text: v[len(v)-1]}
		}
	default:
		return fmt.Errorf("unsupported content type %q", ct)
	}
	return nil
}
