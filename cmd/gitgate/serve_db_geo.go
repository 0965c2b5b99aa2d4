package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/gitgate/gitgate/geo"
	"github.com/gitgate/gitgate/pgstore"
)

// shareGeo, on a Geo primary whose gates share a database, keeps the
// site's registry of secondaries (package pgstore's geo.go): at start the
// gate registers the fingerprint of every secret its geo.yaml names, and
// refuses to start when one differs from the fingerprint another gate of
// the site registered (the secondary's tokens would be accepted by some
// gates and refused by others); then it records every secondary's last
// contact with this gate, its version and replication report, every
// heartbeat, so the registry holds the newest contact any gate heard.
// Secrets stay in the gates' files; the database holds no secret.
func (s *serveCmd) shareGeo(ctx context.Context, g *gate) error {
	if g.shared == nil || g.geo == nil || g.geo.primary == nil {
		return nil
	}
	cfg, err := geo.LoadConfig(s.dataDir)
	if err != nil {
		return err
	}
	secrets, err := cfg.Secrets()
	if err != nil {
		return err
	}
	db := g.shared.db
	for name, secret := range secrets {
		err := db.RegisterGeoNode(ctx, name, pgstore.SecretFingerprint(secret), false)
		if errors.Is(err, pgstore.ErrGeoSecretMismatch) {
			return fmt.Errorf("geo: secondary %s: this gate's secret file is not the one the site's other gates registered in the database; give every gate of the site the same secret file for it", name)
		}
		if err != nil {
			return fmt.Errorf("geo: %w", err)
		}
	}
	s.log.Info("geo registry in the database", "secondaries", len(secrets))
	every := s.database.heartbeat
	g.background = append(g.background, func(ctx context.Context) error {
		tick := time.NewTicker(every)
		defer tick.Stop()
		recorded := map[string]time.Time{}
		for {
			for _, n := range g.geo.primary.Nodes() {
				if n.LastContact.IsZero() || !n.LastContact.After(recorded[n.Name]) {
					continue
				}
				var repl json.RawMessage
				if n.Replication != nil {
					repl, _ = json.Marshal(n.Replication)
				}
				if err := db.RecordGeoContact(ctx, n.Name, s.database.gateID, n.LastContact, n.VersionSeen, repl); err != nil {
					if ctx.Err() == nil {
						s.log.Warn("cannot record a Geo secondary's contact in the database", "node", n.Name, "err", err)
					}
					continue
				}
				recorded[n.Name] = n.LastContact
			}
			select {
			case <-ctx.Done():
				return nil
			case <-tick.C:
			}
		}
	})
	return nil
}
