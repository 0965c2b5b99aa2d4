package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Client calls a running gate's settings API, over TCP with a token or over
// the local admin socket.
type Client struct {
	base  string
	token string
	http  *http.Client
}

// NewClient returns a client for the gate at baseURL (e.g.
// "https://git.example.com") authenticating with token.
func NewClient(baseURL, token string) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("invalid gate URL %q: want http(s)://host[:port]", baseURL)
	}
	return &Client{
		base:  strings.TrimSuffix(baseURL, "/"),
		token: token,
		http:  &http.Client{Timeout: 30 * time.Second, CheckRedirect: noRedirects},
	}, nil
}

// noRedirects makes the client return a redirect as it is: following one
// would send the token to wherever the answer points (Go keeps custom
// headers such as PRIVATE-TOKEN across hosts), and the settings API never
// redirects.
func noRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// NewSocketClient returns a client for the admin socket at path; the socket's
// file permissions are its authentication.
func NewSocketClient(path string) *Client {
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}}
	return &Client{base: "http://gitgate", http: &http.Client{Transport: tr, Timeout: 30 * time.Second, CheckRedirect: noRedirects}}
}

// ErrUnreachable is returned when no gate answers.
var ErrUnreachable = errors.New("gate unreachable")

// Settings reads the settings.
func (c *Client) Settings(ctx context.Context) (Settings, error) {
	return c.do(ctx, http.MethodGet, nil)
}

// Update changes maintenance mode and/or its message (nil: unchanged).
func (c *Client) Update(ctx context.Context, enabled *bool, message *string) (Settings, error) {
	q := url.Values{}
	if enabled != nil {
		q.Set("maintenance_mode", fmt.Sprint(*enabled))
	}
	if message != nil {
		q.Set("maintenance_mode_message", *message)
	}
	return c.do(ctx, http.MethodPut, q)
}

func (c *Client) do(ctx context.Context, method string, form url.Values) (Settings, error) {
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+SettingsPath, body)
	if err != nil {
		return Settings{}, err
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if c.token != "" {
		req.Header.Set("PRIVATE-TOKEN", c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return Settings{}, fmt.Errorf("%w: %s: %w", ErrUnreachable, c.base, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return Settings{}, fmt.Errorf("%w: %s: %w", ErrUnreachable, c.base, err)
	}
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		return Settings{}, fmt.Errorf("the gate answered %s, a redirect to %q; redirects are not followed, so that the token is never sent elsewhere: use the gate's own URL",
			resp.Status, truncate(resp.Header.Get("Location"), 200))
	}
	if resp.StatusCode != http.StatusOK {
		var m struct {
			Message string `json:"message"`
			Error   string `json:"error"`
		}
		json.Unmarshal(data, &m)
		switch resp.StatusCode {
		case http.StatusUnauthorized:
			return Settings{}, fmt.Errorf("the gate refused the token (%s)", m.Message)
		case http.StatusForbidden:
			if m.Message == "403 Forbidden" {
				return Settings{}, errors.New("the token's user is not an admin (403 Forbidden)")
			}
			if m.Error == "insufficient_scope" {
				return Settings{}, errors.New("the token lacks the api scope (403 insufficient_scope)")
			}
		}
		if m.Message == "" {
			m.Message = resp.Status
		}
		return Settings{}, fmt.Errorf("the gate answered %d: %s", resp.StatusCode, m.Message)
	}
	var s Settings
	if err := json.Unmarshal(data, &s); err != nil {
		return Settings{}, fmt.Errorf("the gate's answer cannot be read: %w", err)
	}
	return s, nil
}

// truncate shortens s to n bytes for an error message.
func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
