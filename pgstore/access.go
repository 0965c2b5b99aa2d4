package pgstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"

	"github.com/jackc/pgx/v5"

	"github.com/gitgate/gitgate/access"
	"github.com/gitgate/gitgate/audit"
)

// accessDoc is the access document in the database (an access.Document).
type accessDoc struct{ db *DB }

// AccessDocument returns the access data as an access.Document.
func (db *DB) AccessDocument() access.Document { return accessDoc{db} }

// Name names the document in messages.
func (d accessDoc) Name() string { return "access data in " + d.db.redacted }

// Read returns the document; fs.ErrNotExist when there is none yet.
func (d accessDoc) Read(ctx context.Context) ([]byte, error) {
	ctx, cancel := timeout(ctx)
	defer cancel()
	var body []byte
	err := d.db.pool.QueryRow(ctx, `SELECT body FROM access_document WHERE id = 1`).Scan(&body)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fs.ErrNotExist
	}
	if err != nil {
		return nil, d.db.scrub(fmt.Errorf("read access data from %s: %w", d.db.redacted, err))
	}
	if len(body) > access.MaxFileSize {
		return nil, fmt.Errorf("access data in the database: larger than %d bytes", access.MaxFileSize)
	}
	return body, nil
}

// Update reads the document under a row lock, lets fn compute the new one
// and writes it, in one transaction: concurrent edits from any gate or CLI
// are serialised.
func (d accessDoc) Update(ctx context.Context, fn func(old []byte) ([]byte, error)) error {
	return d.updateOn(ctx, d.db.pool, fn)
}

// updateOn is Update in a transaction begun on on.
func (d accessDoc) updateOn(ctx context.Context, on beginner, fn func(old []byte) ([]byte, error)) error {
	ctx, cancel := timeout(ctx)
	defer cancel()
	err := pgx.BeginFunc(ctx, on, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `LOCK TABLE access_document IN SHARE ROW EXCLUSIVE MODE`); err != nil {
			return err
		}
		var old []byte
		err := tx.QueryRow(ctx, `SELECT body FROM access_document WHERE id = 1`).Scan(&old)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		next, err := fn(old)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO access_document (id, body, version) VALUES (1, $1, 1)
			ON CONFLICT (id) DO UPDATE SET body = $1, version = access_document.version + 1, updated_at = now()`, next)
		return err
	})
	if err != nil {
		var fe *access.FileError
		if errors.As(err, &fe) {
			return err
		}
		return d.db.scrub(fmt.Errorf("update access data in %s: %w", d.db.redacted, err))
	}
	return nil
}

// auditSink appends audit events to the audit_log table.
type auditSink struct{ db *DB }

// AuditSink returns the audit log table as an audit.Sink.
func (db *DB) AuditSink() audit.Sink { return auditSink{db} }

// Append stores one event, as encoded JSON.
func (a auditSink) Append(line []byte) error {
	if !json.Valid(line) {
		return errors.New("audit: event is not JSON")
	}
	ctx, cancel := timeout(context.Background())
	defer cancel()
	if _, err := a.db.pool.Exec(ctx, `INSERT INTO audit_log (event) VALUES ($1::jsonb)`, string(line)); err != nil {
		return a.db.scrub(fmt.Errorf("audit: %w", err))
	}
	return nil
}

// AuditEvents returns the stored events, oldest first (at most limit).
func (db *DB) AuditEvents(ctx context.Context, limit int) ([][]byte, error) {
	ctx, cancel := timeout(ctx)
	defer cancel()
	rows, err := db.pool.Query(ctx, `SELECT event::text FROM audit_log ORDER BY id LIMIT $1`, limit)
	if err != nil {
		return nil, db.scrub(err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) ([]byte, error) {
		var s string
		err := r.Scan(&s)
		return []byte(s), err
	})
	return out, db.scrub(err)
}
