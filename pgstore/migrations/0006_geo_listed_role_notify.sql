-- gitgate schema 6: the Geo registry's rows say when a gate last listed
-- the node in its geo.yaml (listed_at, refreshed every heartbeat by every
-- primary gate that lists it), so that a node removed from geo.yaml is
-- removed from the registry only once no gate of the site has listed it
-- for a while (a rolling configuration change never deletes a row another
-- gate still serves); and a change of the site's Geo role fires NOTIFY,
-- so that every gate re-reads it at once (a wake-up only, as for the
-- state: the gate reads the row, never the payload). announced_epoch is
-- the highest failover epoch a gate of the site has announced to the node
-- (a planned failover's new primary, told on whichever gate it polls).

ALTER TABLE geo_nodes ADD COLUMN listed_at timestamptz NOT NULL DEFAULT now();
ALTER TABLE geo_nodes ADD COLUMN announced_epoch bigint NOT NULL DEFAULT 0 CHECK (announced_epoch >= 0);

CREATE FUNCTION gitgate_notify_geo_role() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('gitgate_geo_role', '');
    RETURN NULL;
END $$;
CREATE TRIGGER geo_role_notify AFTER INSERT OR UPDATE ON geo_role
    FOR EACH ROW EXECUTE FUNCTION gitgate_notify_geo_role();
