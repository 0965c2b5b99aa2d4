-- gitgate schema 1: the maintenance state, the access document, the audit
-- log and the operations in flight on every gate. Every change to the
-- state or the access document is announced with NOTIFY, in the same
-- transaction, so every gate re-reads it at once.

CREATE TABLE maintenance_state (
    id         integer     PRIMARY KEY CHECK (id = 1),
    enabled    boolean     NOT NULL,
    message    text        NOT NULL DEFAULT '',
    since      timestamptz,
    changed_by text        NOT NULL DEFAULT '',
    version    bigint      NOT NULL CHECK (version >= 0)
);

-- The access data (users, SSH keys, token hashes, rules) is one validated
-- document in the access file's own format, versioned as a whole: the same
-- parser and the same checks as the file store, and an edit is one row
-- update under a row lock.
CREATE TABLE access_document (
    id         integer     PRIMARY KEY CHECK (id = 1),
    body       bytea       NOT NULL,
    version    bigint      NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE audit_log (
    id    bigserial   PRIMARY KEY,
    at    timestamptz NOT NULL DEFAULT now(),
    event jsonb       NOT NULL
);

CREATE TABLE operations_in_flight (
    gate_id    text        NOT NULL,
    op_id      bigint      NOT NULL,
    service    text        NOT NULL,
    repo       text        NOT NULL,
    username   text        NOT NULL,
    transport  text        NOT NULL,
    started    timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (gate_id, op_id)
);
CREATE INDEX operations_in_flight_expires ON operations_in_flight (expires_at);

CREATE FUNCTION gitgate_notify_state() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('gitgate_state', NEW.version::text);
    RETURN NULL;
END $$;
CREATE TRIGGER maintenance_state_notify AFTER INSERT OR UPDATE ON maintenance_state
    FOR EACH ROW EXECUTE FUNCTION gitgate_notify_state();

CREATE FUNCTION gitgate_notify_access() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('gitgate_access', NEW.version::text);
    RETURN NULL;
END $$;
CREATE TRIGGER access_document_notify AFTER INSERT OR UPDATE ON access_document
    FOR EACH ROW EXECUTE FUNCTION gitgate_notify_access();
