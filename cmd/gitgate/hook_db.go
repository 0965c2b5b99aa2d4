package main

import (
	"context"
	"errors"
	"os"

	"github.com/gitgate/gitgate/gitgate"
	"github.com/gitgate/gitgate/hooks"
	"github.com/gitgate/gitgate/pgstore"
)

// dbTxnRegistry is the reference-transaction hook's registry with a
// database: the site's table of ref transactions, so that "maintenance
// enable" on any gate waits for an update let through by any other (see
// package pgstore's fence.go). When the gate that runs the push gave the
// hook its socket (package pgstore's hookgate.go), the gate registers the
// update on its pooled connection; else, or when that gate is gone, the
// hook connects to the database itself.
type dbTxnRegistry struct {
	src            dbHookSource
	owner          pgstore.TxnOwner
	socket, secret string
}

func newDBTxnRegistry(src dbHookSource, gitPID int, repo string) dbTxnRegistry {
	host, _ := os.Hostname()
	if host == "" {
		host = "localhost"
	}
	socket, secret := pgstore.HookEnv()
	if socket == "" || secret == "" {
		socket, secret = "", ""
	}
	return dbTxnRegistry{src: src, owner: pgstore.TxnOwner{Host: host, PID: gitPID, Repo: repo}, socket: socket, secret: secret}
}

// Register reads the state and registers the update, in one database
// transaction, bounded by the hook's --timeout.
func (r dbTxnRegistry) Register(ctx context.Context) (gitgate.State, error) {
	ctx, cancel := context.WithTimeout(ctx, r.src.timeout)
	defer cancel()
	if r.socket != "" {
		st, err := pgstore.GateRegister(ctx, r.socket, r.secret, r.owner.PID)
		if err == nil {
			return st, nil
		}
		if !errors.Is(err, pgstore.ErrNoGate) {
			return gitgate.State{}, &hooks.StateError{Reason: ReasonDatabase, Err: err}
		}
	}
	st, err := pgstore.RegisterTxn(ctx, r.src.url, r.owner, 0)
	if err != nil {
		return gitgate.State{}, &hooks.StateError{Reason: ReasonDatabase, Err: err}
	}
	return st, nil
}

// Release removes the update's record.
func (r dbTxnRegistry) Release(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, r.src.timeout)
	defer cancel()
	if r.socket != "" {
		err := pgstore.GateRelease(ctx, r.socket, r.secret)
		if !errors.Is(err, pgstore.ErrNoGate) {
			return err
		}
	}
	return pgstore.ReleaseTxn(ctx, r.src.url, r.owner)
}
