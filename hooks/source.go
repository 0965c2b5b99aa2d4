package hooks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/gitgate/gitgate/gitgate"
	"github.com/gitgate/gitgate/internal/atomicfile"
)

// DataDirSource reads the maintenance state from the gate's data dir, as the
// gate itself does. Unlike [gitgate.FileStore] alone, it treats a missing
// data dir as unreadable: a hook pointed at the wrong directory must not read
// it as "not in maintenance". A data dir without a state file is a gate that
// was never put in maintenance, unless it has had a state
// ([gitgate.ErrStateMissing]). Reads are bounded in time, and a state file
// that is a FIFO or another special file is refused at once.
type DataDirSource struct {
	// Dir is the data dir; relative paths are relative to the hook's
	// working directory (the repository).
	Dir string
}

// Load reads the state.
func (s DataDirSource) Load(ctx context.Context) (gitgate.State, error) {
	fi, err := os.Stat(s.Dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return gitgate.State{}, &StateError{Reason: ReasonDataDirMissing, Err: err}
	case err != nil:
		return gitgate.State{}, &StateError{Reason: ReasonDataDirUnreadable, Err: err}
	case !fi.IsDir():
		return gitgate.State{}, &StateError{Reason: ReasonDataDirMissing, Err: fmt.Errorf("%s: not a directory", s.Dir)}
	}
	st, err := gitgate.NewFileStore(s.Dir).Load(ctx)
	switch {
	case err == nil:
		return st, nil
	case ctx.Err() != nil && !errors.Is(err, atomicfile.ErrTimeout):
		return gitgate.State{}, &StateError{Reason: ReasonInterrupted, Err: err}
	case errors.Is(err, gitgate.ErrStateMissing):
		return gitgate.State{}, &StateError{Reason: ReasonStateFileMissing, Err: err}
	case errors.Is(err, atomicfile.ErrTimeout):
		return gitgate.State{}, &StateError{Reason: ReasonStateFileTimeout, Err: err}
	}
	return gitgate.State{}, &StateError{Reason: ReasonStateFileInvalid, Err: err}
}

// DefaultStatusTimeout bounds a status request, from connecting to reading
// the whole answer. The hook runs on every push: a gate that cannot answer in
// this time is treated as unreachable.
const DefaultStatusTimeout = 2 * time.Second

// maxStatusAnswer bounds the settings JSON read from the status URL. GitLab's
// is a few tens of kilobytes.
const maxStatusAnswer = 1 << 20

// TokenHeader is the header that carries the API token, as in GitLab.
const TokenHeader = "PRIVATE-TOKEN"

// StatusSource reads the maintenance state from a running gate's admin API,
// for hosts that do not share the gate's data dir. URL answers a GET with
// GitLab's application settings JSON (GET /api/v4/application/settings):
// {"maintenance_mode": bool, "maintenance_mode_message": string|null, ...}.
//
// It is strict: a redirect, a status other than 200, or an answer without a
// boolean maintenance_mode is an error, so the hook fails closed.
type StatusSource struct {
	URL string
	// Token is sent in the PRIVATE-TOKEN header. When empty, TokenFile, if
	// set, is read for it (surrounding white space trimmed).
	Token     string
	TokenFile string
	// Timeout bounds the whole request; zero means DefaultStatusTimeout.
	Timeout time.Duration
	// Client sends the request; nil means one that follows no redirects
	// (the token must not travel to another address).
	Client *http.Client
}

// statusAnswer is the part of GitLab's settings JSON the hook needs.
type statusAnswer struct {
	MaintenanceMode        *bool   `json:"maintenance_mode"`
	MaintenanceModeMessage *string `json:"maintenance_mode_message"`
}

// Load asks the status URL for the state.
func (s StatusSource) Load(ctx context.Context) (gitgate.State, error) {
	u, err := parseStatusURL(s.URL)
	if err != nil {
		return gitgate.State{}, &StateError{Reason: ReasonStatusURLInvalid, Err: err}
	}
	token, err := s.token(ctx)
	if err != nil {
		return gitgate.State{}, &StateError{Reason: ReasonTokenUnreadable, Err: err}
	}
	timeout := s.Timeout
	if timeout <= 0 {
		timeout = DefaultStatusTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return gitgate.State{}, &StateError{Reason: ReasonStatusURLInvalid, Err: err}
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "gitgate-pre-receive-hook")
	if token != "" {
		req.Header.Set(TokenHeader, token)
	}
	client := s.Client
	if client == nil {
		client = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		}}
	}
	resp, err := client.Do(req)
	if err != nil {
		return gitgate.State{}, requestError(ctx, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return gitgate.State{}, &StateError{
			Reason: fmt.Sprintf(ReasonStatusHTTPFormat, resp.StatusCode),
			Err:    fmt.Errorf("GET %s: %s", u.Redacted(), resp.Status),
		}
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxStatusAnswer+1))
	if err != nil {
		return gitgate.State{}, requestError(ctx, err)
	}
	if len(body) > maxStatusAnswer {
		return gitgate.State{}, &StateError{Reason: ReasonStatusAnswer, Err: fmt.Errorf("answer larger than %d bytes", maxStatusAnswer)}
	}
	var ans statusAnswer
	if err := json.Unmarshal(body, &ans); err != nil {
		return gitgate.State{}, &StateError{Reason: ReasonStatusAnswer, Err: fmt.Errorf("parse answer: %w", err)}
	}
	if ans.MaintenanceMode == nil {
		return gitgate.State{}, &StateError{Reason: ReasonStatusAnswer, Err: errors.New("answer has no maintenance_mode")}
	}
	st := gitgate.State{Enabled: *ans.MaintenanceMode}
	if ans.MaintenanceModeMessage != nil {
		st.Message = *ans.MaintenanceModeMessage
	}
	return st, nil
}

// ValidateStatusURL checks that raw is an absolute http or https URL, as
// [StatusSource] needs.
func ValidateStatusURL(raw string) error {
	_, err := parseStatusURL(raw)
	return err
}

func parseStatusURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("status URL: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("status URL %q: want an absolute http or https URL", u.Redacted())
	}
	return u, nil
}

// maxTokenFile bounds the token file: a token is a few dozen bytes.
const maxTokenFile = 4 << 10

// token returns the token to send, reading TokenFile when Token is empty. The
// read is bounded in size and time, and a FIFO or other special file is
// refused.
func (s StatusSource) token(ctx context.Context) (string, error) {
	if s.Token != "" || s.TokenFile == "" {
		return s.Token, nil
	}
	data, err := atomicfile.ReadBoundedContext(ctx, s.TokenFile, maxTokenFile)
	if err != nil {
		return "", fmt.Errorf("read token file: %w", err)
	}
	return strings.TrimSpace(string(data)), nil
}

// requestError classifies a failed request: too slow, or unreachable.
func requestError(ctx context.Context, err error) *StateError {
	if errors.Is(context.Cause(ctx), context.Canceled) {
		return &StateError{Reason: ReasonInterrupted, Err: err}
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) {
		return &StateError{Reason: ReasonStatusTimeout, Err: err}
	}
	return &StateError{Reason: ReasonStatusUnreachable, Err: err}
}
