-- gitgate schema 4: Geo on a database site. geo_nodes is the primary
-- site's registry of its secondaries, shared by every gate of the site:
-- the node's name, the fingerprint of the secret shared with it (never
-- the secret: each gate keeps the secret in its own file, and the
-- fingerprint lets a gate see that its file is the site's), and the last
-- status any gate heard from it. geo_role is the site's role and failover
-- term (what a file-based gate keeps in geo-role.json), one row, whose
-- epoch never goes down.

CREATE TABLE geo_nodes (
    name               text        PRIMARY KEY,
    secret_fingerprint text        NOT NULL,
    added_at           timestamptz NOT NULL DEFAULT now(),
    last_contact       timestamptz,
    contact_gate       text        NOT NULL DEFAULT '',
    version_seen       bigint      NOT NULL DEFAULT 0 CHECK (version_seen >= 0),
    replication        jsonb
);

CREATE TABLE geo_role (
    id      integer     PRIMARY KEY CHECK (id = 1),
    record  jsonb       NOT NULL,
    epoch   bigint      NOT NULL CHECK (epoch >= 0),
    updated timestamptz NOT NULL DEFAULT now()
);
