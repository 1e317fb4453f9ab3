-- What replicas share so that TTLock sees one well-behaved client: turns on gateways,
-- the account's pace and its token.

-- One row per relayed command waiting for or holding its gateway (or gateway-less
-- lock). The lowest live position holds the turn; positions are handed out by
-- gateway_turn_counters under its row lock, so they commit in order. A row lives while
-- its replica renews its lease: a replica that dies frees its turns when they lapse.
CREATE TABLE gateway_turn_counters (
    serial_key TEXT PRIMARY KEY,
    last       BIGINT NOT NULL
);

CREATE TABLE gateway_turns (
    serial_key  TEXT NOT NULL,
    position    BIGINT NOT NULL,
    replica     UUID NOT NULL,
    lease_until TIMESTAMPTZ NOT NULL,
    create_time TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (serial_key, position)
);

CREATE INDEX gateway_turns_replica_idx ON gateway_turns (replica);

-- The pace of each TTLock account as a virtual schedule (GCRA): `tat` is when the
-- account's bucket would be full again. Each request moves it on by one interval.
CREATE TABLE ttlock_pace (
    account_key TEXT PRIMARY KEY,
    tat         TIMESTAMPTZ NOT NULL
);

-- The account's token is shared by the replicas; this names the key that sealed it and
-- counts its renewals.
ALTER TABLE ttlock_accounts
    ADD COLUMN token_key_id  TEXT,
    ADD COLUMN token_version BIGINT NOT NULL DEFAULT 0;
