package pgstore

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
)

// The NOTIFY channels the triggers of the schema use.
const (
	ChannelState  = "gitgate_state"
	ChannelAccess = "gitgate_access"
	// ChannelGeoRole announces a change of the site's Geo role (geo_role).
	ChannelGeoRole = "gitgate_geo_role"
)

// Watcher keeps a gate's in-memory copies current: it LISTENs on a
// dedicated connection and calls OnState or OnAccess when the state or the
// access document changed. On every (re)connection it calls both, so that
// a change made while it was away is read. While the database cannot be
// reached it still calls OnState every Refresh, so the state's stale bound
// is applied on time.
type Watcher struct {
	DB       *DB
	OnState  func()
	OnAccess func()
	// OnGeoRole, if set, is called when the site's Geo role changed, and
	// on every (re)connection.
	OnGeoRole func()
	// Refresh is how often the state is re-read without a notification
	// (and the connection checked); it must be well under the stale bound.
	Refresh time.Duration
	// Connected, if set, is called with true when the watch connection is
	// established and false when it is lost.
	Connected func(bool)
}

// Run watches until ctx ends.
func (w *Watcher) Run(ctx context.Context) {
	refresh := w.Refresh
	if refresh <= 0 {
		refresh = time.Second
	}
	backoff := 25 * time.Millisecond
	down := false
	for ctx.Err() == nil {
		conn, err := w.listen(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if !down {
				w.DB.log.Error("shared state database unreachable; pushes go on until the state is older than --database-stale-after, clones on the last known data",
					"database", w.DB.redacted, "err", w.DB.scrub(err))
				down = true
				if w.Connected != nil {
					w.Connected(false)
				}
			}
			w.OnState() // applies the stale bound
			select {
			case <-ctx.Done():
				return
			case <-time.After(min(backoff, refresh)):
			}
			backoff = min(2*backoff, 2*time.Second)
			continue
		}
		if down {
			w.DB.log.Info("shared state database reachable again; re-reading everything", "database", w.DB.redacted)
		}
		down, backoff = false, 25*time.Millisecond
		w.OnState()
		w.OnAccess()
		if w.OnGeoRole != nil {
			w.OnGeoRole()
		}
		if w.Connected != nil {
			w.Connected(true)
		}
		err = w.wait(ctx, conn, refresh)
		closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		conn.Close(closeCtx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		w.DB.log.Error("lost the shared state database's notification connection; reconnecting", "database", w.DB.redacted, "err", w.DB.scrub(err))
		down = true
		if w.Connected != nil {
			w.Connected(false)
		}
		w.OnState()
	}
}

// listen opens the dedicated connection and subscribes.
func (w *Watcher) listen(ctx context.Context) (*pgx.Conn, error) {
	cfg := w.DB.connConf.Copy()
	// A wait that times out must leave the connection usable: interrupt
	// it with a read deadline, not a cancel request.
	cfg.BuildContextWatcherHandler = func(c *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.DeadlineContextWatcherHandler{Conn: c.Conn()}
	}
	cctx, cancel := timeout(ctx)
	defer cancel()
	conn, err := pgx.ConnectConfig(cctx, cfg)
	if err != nil {
		return nil, err
	}
	if _, err := conn.Exec(cctx, "LISTEN "+ChannelState+"; LISTEN "+ChannelAccess+"; LISTEN "+ChannelGeoRole); err != nil {
		conn.Close(context.WithoutCancel(cctx))
		return nil, err
	}
	return conn, nil
}

// wait dispatches notifications until the connection fails or ctx ends.
func (w *Watcher) wait(ctx context.Context, conn *pgx.Conn, refresh time.Duration) error {
	for {
		wctx, cancel := context.WithTimeout(ctx, refresh)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		switch {
		case err == nil:
			switch {
			case n.Channel == ChannelAccess:
				w.OnAccess()
			case n.Channel == ChannelGeoRole:
				if w.OnGeoRole != nil {
					w.OnGeoRole()
				}
			default:
				w.OnState()
			}
			continue
		case ctx.Err() != nil:
			return ctx.Err()
		case !errors.Is(err, context.DeadlineExceeded) || conn.IsClosed():
			return err
		}
		// Quiet for a while: check the connection, and re-read the state
		// so its age stays under the bound.
		pctx, cancel := timeout(ctx)
		err = conn.Ping(pctx)
		cancel()
		if err != nil {
			return err
		}
		w.OnState()
	}
}
