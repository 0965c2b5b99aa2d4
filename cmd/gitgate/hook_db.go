package main

import (
	"context"
	"os"

	"github.com/gitgate/gitgate/gitgate"
	"github.com/gitgate/gitgate/hooks"
	"github.com/gitgate/gitgate/pgstore"
)

// dbTxnRegistry is the reference-transaction hook's registry with a
// database: the site's table of ref transactions, so that "maintenance
// enable" on any gate waits for an update let through by any other (see
// package pgstore's fence.go).
type dbTxnRegistry struct {
	src   dbHookSource
	owner pgstore.TxnOwner
}

func newDBTxnRegistry(src dbHookSource, gitPID int, repo string) dbTxnRegistry {
	host, _ := os.Hostname()
	if host == "" {
		host = "localhost"
	}
	return dbTxnRegistry{src: src, owner: pgstore.TxnOwner{Host: host, PID: gitPID, Repo: repo}}
}

// Register reads the state from the database and registers the update,
// in one transaction, bounded by the hook's --timeout.
func (r dbTxnRegistry) Register(ctx context.Context) (gitgate.State, error) {
	ctx, cancel := context.WithTimeout(ctx, r.src.timeout)
	defer cancel()
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
	return pgstore.ReleaseTxn(ctx, r.src.url, r.owner)
}
