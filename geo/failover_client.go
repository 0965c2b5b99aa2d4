package geo

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// FailoverClient runs "gitgate geo failover" against a running primary's
// FailoverPath and hands each progress line to the caller; it decides
// nothing itself.
type FailoverClient struct {
	// Do sends the request (the caller adds the base URL or socket and the
	// admin token).
	Do func(ctx context.Context, form url.Values) (*http.Response, error)
	// Reconnect is how often a switched site is asked again (250 ms when
	// zero).
	Reconnect time.Duration
}

// maxEventLine bounds one progress line from the server.
const maxEventLine = 64 << 10

// ErrFailoverFailed is a run that ended with an error line; its text is
// the server's.
var ErrFailoverFailed = errors.New("geo failover")

// Run asks the site to run req and reports every event. When the site
// switches its role (step 4), it asks again (resuming at step 5) until the
// switched gate answers, within req's timeout.
func (c *FailoverClient) Run(ctx context.Context, req FailoverRequest, event func(FailoverEvent)) error {
	timeout := req.Timeout
	if timeout <= 0 {
		timeout = DefaultFailoverTimeout
	}
	deadline := time.Now().Add(timeout + 10*time.Second)
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	form := url.Values{}
	set := func(k, v string) {
		if v != "" {
			form.Set(k, v)
		}
	}
	set("to", req.To)
	set("message", req.Message)
	if req.Timeout > 0 {
		set("timeout", req.Timeout.String())
	}
	for k, v := range map[string]bool{"dry_run": req.DryRun, "keep_maintenance": req.KeepMaintenance, "abort": req.Abort} {
		if v {
			set(k, strconv.FormatBool(v))
		}
	}
	every := c.Reconnect
	if every <= 0 {
		every = 250 * time.Millisecond
	}
	reconnecting := false
	for {
		restart, err := c.once(ctx, form, event)
		switch {
		case err == nil && !restart:
			return nil
		case err == nil && restart:
			reconnecting = true
			// The switched gate resumes from the record: the target stays.
			form.Del("message")
		case !reconnecting:
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: the site did not answer after its role switch: %w (run the command again to resume)", ErrFailoverFailed, ctx.Err())
		case <-time.After(every):
		}
	}
}

// once runs one request; restart is true when the site switches its role.
// Connection errors while reconnecting are returned for a retry.
func (c *FailoverClient) once(ctx context.Context, form url.Values, event func(FailoverEvent)) (restart bool, err error) {
	resp, err := c.Do(ctx, form)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		return false, fmt.Errorf("%w: %s: %s", ErrFailoverFailed, resp.Status, jsonMessage(body, strings.TrimSpace(string(body))))
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 4096), maxEventLine)
	for sc.Scan() {
		var e FailoverEvent
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return false, fmt.Errorf("%w: bad progress line: %w", ErrFailoverFailed, err)
		}
		switch e.Phase {
		case PhaseError:
			return false, fmt.Errorf("%w: %s", ErrFailoverFailed, e.Text)
		case PhaseRestart:
			event(e)
			return true, nil
		case PhaseDone:
			event(e)
			return false, nil
		}
		event(e)
	}
	if err := sc.Err(); err != nil {
		return false, fmt.Errorf("%w: %w (run the command again to resume)", ErrFailoverFailed, err)
	}
	return false, fmt.Errorf("%w: the answer ended early (run the command again to resume)", ErrFailoverFailed)
}

// FormatEvent is a progress line as the CLI prints it.
func FormatEvent(e FailoverEvent) string {
	switch e.Phase {
	case PhaseStart:
		return fmt.Sprintf("step %d/5 start: %s", e.Step, e.Text)
	case PhaseEnd:
		return fmt.Sprintf("step %d/5 done in %s", e.Step, e.Duration.Round(time.Millisecond))
	case PhaseFailed:
		return fmt.Sprintf("step %d/5 FAILED after %s: %s", e.Step, e.Duration.Round(time.Millisecond), e.Text)
	case PhasePlan:
		return fmt.Sprintf("  %d. %s", e.Step, e.Text)
	case PhaseBlocker:
		return fmt.Sprintf("  blocks step %d: %s", e.Step, e.Text)
	case PhaseRestart:
		return "switching roles: " + e.Text + "; reconnecting"
	}
	return e.Text
}
