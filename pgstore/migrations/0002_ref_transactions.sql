-- gitgate schema 2: the ref transactions in flight on every host of the
-- site. The reference-transaction hook inserts one row in "prepared", in
-- the transaction that reads the maintenance state under a lock that an
-- enable waits for, and deletes it in "committed" or "aborted". Enabling
-- maintenance waits until the rows present after its commit are gone, so
-- no ref changes on any gate once it has returned. A hook that died leaves
-- a row that expires (or that its host's gates remove once its git
-- process is gone).

CREATE TABLE ref_transactions (
    id         bigserial   PRIMARY KEY,
    host       text        NOT NULL,
    pid        integer     NOT NULL,
    repo       text        NOT NULL,
    started    timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
CREATE INDEX ref_transactions_owner ON ref_transactions (host, pid);
