// Package audit appends security-relevant events (maintenance toggles,
// settings changes) to a file in the data dir, one JSON object a line, so
// that admins can tell who changed what, from where, and when.
package audit

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// FileName is the audit log's name in the data dir.
const FileName = "audit.log"

// maxLine bounds one event: O_APPEND writes up to the pipe/page size are not
// interleaved with other writers', and an event is far smaller anyway.
const maxLine = 4096

// Event is one audited action.
type Event struct {
	Time       time.Time `json:"time"`
	Action     string    `json:"action"`    // e.g. "maintenance.enable"
	Actor      string    `json:"actor"`     // user name, or "cli:<os user>"
	Transport  string    `json:"transport"` // "cli", "api", "socket", "geo"
	RemoteAddr string    `json:"remote_addr,omitempty"`
	Old        any       `json:"old,omitempty"`
	New        any       `json:"new,omitempty"`
	Detail     string    `json:"detail,omitempty"`
}

// Log appends events to a file. It is safe for concurrent use by goroutines
// and processes: every event is one write to a file opened with O_APPEND.
type Log struct {
	path string
	sink Sink // nil: the file at path
	now  func() time.Time
}

// Sink stores encoded events elsewhere than the data dir's file (a
// database table shared by every gate of a site).
type Sink interface {
	// Append stores one event, encoded as JSON, durably.
	Append(line []byte) error
}

// OpenSink returns an audit log that stores its events in sink.
func OpenSink(sink Sink) *Log { return &Log{sink: sink, now: time.Now} }

// Open returns the audit log of a data dir. The file is created on first use.
func Open(dataDir string) *Log {
	return &Log{path: filepath.Join(dataDir, FileName), now: time.Now}
}

// Path is the file's path.
func (l *Log) Path() string { return l.path }

// Record appends ev (stamped with the current time if it has none) and syncs
// the file, so an acknowledged change is never missing from the log.
func (l *Log) Record(ev Event) error {
	if ev.Time.IsZero() {
		ev.Time = l.now().UTC()
	}
	line, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("audit: encode: %w", err)
	}
	if len(line) >= maxLine {
		return fmt.Errorf("audit: event of %d bytes is too large", len(line))
	}
	if l.sink != nil {
		return l.sink.Append(line)
	}
	// O_NONBLOCK: opening a FIFO must not wait for a reader (Record runs
	// after a change was applied, and would hang the request that made it);
	// anything but a regular file is refused.
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0o600)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil {
		return fmt.Errorf("audit: %w", err)
	} else if !fi.Mode().IsRegular() {
		return fmt.Errorf("audit: %s is not a regular file", l.path)
	}
	if _, err := f.Write(append(line, '\n')); err != nil {
		return fmt.Errorf("audit: write: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("audit: sync: %w", err)
	}
	return nil
}
