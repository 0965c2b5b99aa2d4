-- gitgate schema 5: a Geo secondary site on a database. One gate of the
-- site is elected (an advisory lock, see Elector) to follow the primary
-- and replicate; it mirrors the primary's state into maintenance_state and
-- its access data into access_document, and records here, every
-- heartbeat, how its following goes, so that every gate of the site can
-- tell whether the site's follower is connected. One row; written only
-- through the elected gate's lock connection.

CREATE TABLE geo_secondary (
    id           integer     PRIMARY KEY CHECK (id = 1),
    node         text        NOT NULL,
    primary_url  text        NOT NULL,
    gate         text        NOT NULL,
    connected    boolean     NOT NULL,
    last_contact timestamptz,
    version      bigint      NOT NULL CHECK (version >= 0),
    last_error   text        NOT NULL DEFAULT '',
    replication  jsonb,
    updated      timestamptz NOT NULL DEFAULT now()
);
