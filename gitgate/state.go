package gitgate

import (
	"context"
	"errors"
	"fmt"
	"time"
	"unicode"
	"unicode/utf8"
)

// MaxMessageLength is the longest maintenance banner accepted, in characters,
// as in GitLab's maintenance_mode_message.
const MaxMessageLength = 255

// State is the read-only maintenance state of the instance.
type State struct {
	// Enabled is true while the instance is in read-only maintenance mode.
	Enabled bool `json:"enabled"`
	// Message is the optional banner text set by the admin (not the push
	// refusal, which is always MaintenanceMessage).
	Message string `json:"message,omitempty"`
	// Since is when the state last changed.
	Since time.Time `json:"since,omitzero"`
	// By names who changed it last (a user name, or "cli:<os user>").
	By string `json:"by,omitempty"`
	// Version grows by one with every change and never goes back.
	Version uint64 `json:"version"`
}

// ErrInvalidMessage is returned for a banner that is too long or holds
// control characters or invalid UTF-8.
var ErrInvalidMessage = errors.New("invalid maintenance message")

// ValidateMessage checks a maintenance banner: valid UTF-8, at most
// MaxMessageLength characters, and no control characters (a banner is one line).
func ValidateMessage(msg string) error {
	if !utf8.ValidString(msg) {
		return fmt.Errorf("%w: not valid UTF-8", ErrInvalidMessage)
	}
	if n := utf8.RuneCountInString(msg); n > MaxMessageLength {
		return fmt.Errorf("%w: %d characters, at most %d allowed", ErrInvalidMessage, n, MaxMessageLength)
	}
	for _, r := range msg {
		if unicode.IsControl(r) {
			return fmt.Errorf("%w: control character %U", ErrInvalidMessage, r)
		}
	}
	return nil
}

// Validate checks a state read from storage or the network.
func (s State) Validate() error {
	if err := ValidateMessage(s.Message); err != nil {
		return err
	}
	if s.Enabled && s.Version == 0 {
		return errors.New("enabled state with version 0")
	}
	return nil
}

// Snapshot is the state as a reader last saw it. Err is set when the state
// could not be read; State then holds the last good value (the gate refuses
// pushes while Err is set, and reads keep working).
type Snapshot struct {
	State State
	Err   error
}

// Change is a requested change of the maintenance state. Nil fields keep
// their current value.
type Change struct {
	Enabled *bool
	// Message replaces the banner.
	Message *string
	// By names who asks for the change.
	By string
}

// Store keeps the maintenance state durably.
type Store interface {
	// Load reads the current state. A store that was never written reads as
	// "not in maintenance" with version 0.
	Load(ctx context.Context) (State, error)
	// Apply makes a change atomically with respect to other writers and
	// returns the new state. The version grows by exactly one.
	Apply(ctx context.Context, c Change) (State, error)
}

// Apply returns s changed by c, with the version bumped by one, stamped with
// the time now and the author c.By. It validates the new message.
func (s State) Apply(c Change, now time.Time) (State, error) {
	if c.Message != nil {
		if err := ValidateMessage(*c.Message); err != nil {
			return s, err
		}
		s.Message = *c.Message
	}
	if c.Enabled != nil {
		s.Enabled = *c.Enabled
	}
	s.Version++
	s.Since = now.UTC()
	s.By = c.By
	return s, nil
}
