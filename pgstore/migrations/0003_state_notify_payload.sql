-- gitgate schema 3: a state change's NOTIFY carries the new state, so that
-- every gate publishes it without reading the database again. The payload
-- is a JSON object: v (version), e (enabled), m (message), s (since, in
-- microseconds since the epoch, or null), b (changed by). PostgreSQL
-- bounds a payload to 8000 bytes; a state whose payload would not fit
-- (it cannot today: the message has at most 255 characters) is announced
-- with its version alone, and the gates re-read it, as they do any
-- payload they cannot use.

CREATE OR REPLACE FUNCTION gitgate_notify_state() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    payload text;
BEGIN
    payload := json_build_object(
        'v', NEW.version,
        'e', NEW.enabled,
        'm', NEW.message,
        's', (extract(epoch FROM NEW.since) * 1000000)::bigint,
        'b', NEW.changed_by)::text;
    IF octet_length(payload) > 7900 THEN
        payload := NEW.version::text;
    END IF;
    PERFORM pg_notify('gitgate_state', payload);
    RETURN NULL;
END $$;
