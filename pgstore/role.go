package pgstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/gitgate/gitgate/geo"
)

// RoleStore is the geo.RoleStore of a site whose gates share the
// database: the one row of geo_role ([DB.LoadGeoRole], [DB.SaveGeoRole]),
// whose epoch never goes down. Every write fires NOTIFY on
// [ChannelGeoRole] (schema 6), so every gate re-reads it at once
// ([Watcher.OnGeoRole]).
type RoleStore struct{ DB *DB }

var _ geo.RoleStore = RoleStore{}

// LoadRole reads the site's role record; a record that does not decode or
// validate is an error (the gate refuses to start on it rather than guess).
func (r RoleStore) LoadRole(ctx context.Context) (geo.RoleRecord, bool, error) {
	row, ok, err := r.DB.LoadGeoRole(ctx)
	if err != nil || !ok {
		return geo.RoleRecord{}, ok, err
	}
	var rec geo.RoleRecord
	if err := json.Unmarshal(row.Record, &rec); err != nil {
		return geo.RoleRecord{}, false, fmt.Errorf("the Geo role in the database: %w", err)
	}
	if err := geo.ValidateRecord(rec); err != nil {
		return geo.RoleRecord{}, false, fmt.Errorf("the Geo role in the database: %w", err)
	}
	if rec.Epoch != row.Epoch {
		return geo.RoleRecord{}, false, fmt.Errorf("the Geo role in the database: record epoch %d, row epoch %d", rec.Epoch, row.Epoch)
	}
	return rec, true, nil
}

// SaveRole writes the site's role record, unless the stored one has a
// higher epoch (an error wrapping geo.ErrRoleBehind).
func (r RoleStore) SaveRole(ctx context.Context, rec geo.RoleRecord) error {
	if err := geo.ValidateRecord(rec); err != nil {
		return fmt.Errorf("save the Geo role: %w", err)
	}
	if rec.Updated.IsZero() {
		rec.Updated = time.Now().UTC()
	}
	data, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("save the Geo role: %w", err)
	}
	err = r.DB.SaveGeoRole(ctx, GeoRole{Epoch: rec.Epoch, Record: data})
	if errors.Is(err, ErrGeoEpochBehind) {
		return fmt.Errorf("save the Geo role of %s: %w", rec.Term, geo.ErrRoleBehind)
	}
	return err
}
