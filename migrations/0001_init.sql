-- Portcullis's state in PostgreSQL: one table per record kind of the `Store` trait
-- (src/store/mod.rs). Applied once, in a transaction, by src/store/postgres/migrate.rs, which
-- records it in portcullis_schema. Never edit a migration once released: add the next one.
--
-- Keys are text in the "C" collation, so lists come back in byte order as sled's do. Records
-- the gateway reads whole are JSON (the same serde encoding sled stores); what SQL must filter,
-- order or purge on (expiry, owner) is a column beside it. Times are unix seconds (bigint),
-- `since` of a user revocation unix milliseconds, as the trait passes them.

CREATE TABLE portcullis_meta (
    key   text COLLATE "C" PRIMARY KEY,
    value text NOT NULL
);

CREATE TABLE portcullis_secrets (
    name  text COLLATE "C" PRIMARY KEY,
    value bytea NOT NULL CHECK (length(value) = 32)
);

CREATE TABLE portcullis_users (
    username text COLLATE "C" PRIMARY KEY,
    data     json NOT NULL
);

-- The canonical form of a name -> the account stored before names were canonical ("Alice").
CREATE TABLE portcullis_legacy_names (
    canonical text COLLATE "C" PRIMARY KEY,
    username  text COLLATE "C" NOT NULL
);

-- The e-mail index key (trimmed, NFC, lower case) -> the account holding that address.
CREATE TABLE portcullis_emails (
    email    text COLLATE "C" PRIMARY KEY,
    username text COLLATE "C" NOT NULL
);
CREATE INDEX portcullis_emails_username ON portcullis_emails (username);

CREATE TABLE portcullis_devices (
    username text COLLATE "C" NOT NULL,
    id       text COLLATE "C" NOT NULL,
    data     json NOT NULL,
    PRIMARY KEY (username, id)
);

CREATE TABLE portcullis_executions (
    id      text COLLATE "C" PRIMARY KEY,
    expires bigint NOT NULL,
    state   bytea NOT NULL
);
CREATE INDEX portcullis_executions_expires ON portcullis_executions (expires);

-- The record without `last_seen`, which lives in its own column so a touch is one UPDATE.
CREATE TABLE portcullis_sessions (
    sid       text COLLATE "C" PRIMARY KEY,
    username  text COLLATE "C" NOT NULL,
    issued    bigint NOT NULL,
    expires   bigint NOT NULL,
    last_seen bigint,
    data      json NOT NULL
);
CREATE INDEX portcullis_sessions_username ON portcullis_sessions (username, issued, sid);
CREATE INDEX portcullis_sessions_expires ON portcullis_sessions (expires);

CREATE TABLE portcullis_revoked_sessions (
    sid     text COLLATE "C" PRIMARY KEY,
    expires bigint NOT NULL
);
CREATE INDEX portcullis_revoked_sessions_expires ON portcullis_revoked_sessions (expires);

CREATE TABLE portcullis_revoked_users (
    username text COLLATE "C" PRIMARY KEY,
    since_ms bigint NOT NULL
);

-- Fixed-window counters: the window ends at window_end (exclusive).
CREATE TABLE portcullis_counters (
    key        text COLLATE "C" PRIMARY KEY,
    window_end bigint NOT NULL,
    count      bigint NOT NULL
);
CREATE INDEX portcullis_counters_window_end ON portcullis_counters (window_end);

-- Sliding failure windows: each failure's time, oldest first; kept until `expires`
-- (the newest failure + the window).
CREATE TABLE portcullis_failure_windows (
    key         text COLLATE "C" PRIMARY KEY,
    window_secs bigint NOT NULL,
    times       bigint[] NOT NULL,
    expires     bigint NOT NULL
);
CREATE INDEX portcullis_failure_windows_expires ON portcullis_failure_windows (expires);

CREATE TABLE portcullis_tickets (
    hash    text COLLATE "C" PRIMARY KEY,
    expires bigint NOT NULL,
    data    bytea NOT NULL
);
CREATE INDEX portcullis_tickets_expires ON portcullis_tickets (expires);

CREATE TABLE portcullis_invitations (
    id      text COLLATE "C" PRIMARY KEY,
    expires bigint NOT NULL,
    data    json NOT NULL
);
CREATE INDEX portcullis_invitations_expires ON portcullis_invitations (expires);

CREATE TABLE portcullis_outbox (
    id     text COLLATE "C" PRIMARY KEY,
    record bytea NOT NULL
);

-- `until` NULL: until an operator lifts it.
CREATE TABLE portcullis_bans (
    subject text COLLATE "C" PRIMARY KEY,
    until   bigint,
    data    json NOT NULL
);

-- A failure at `now` in a sliding window: the times still inside the window, then `now`,
-- at most the newest `keep` (at least one). As memory_store::slide, in one statement.
CREATE FUNCTION portcullis_slide(times bigint[], window_secs bigint, now bigint, keep integer)
RETURNS bigint[] LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(array_agg(t ORDER BY n), '{}')
    FROM (
        SELECT t, n FROM unnest(
            array_append(
                ARRAY(SELECT x FROM unnest(times) WITH ORDINALITY AS a(x, i)
                      WHERE x > now - window_secs ORDER BY i),
                now)
        ) WITH ORDINALITY AS b(t, n)
        ORDER BY n DESC
        LIMIT greatest(keep, 1)
    ) kept
$$;

-- `times` without its last occurrence of `at` (unchanged when there is none).
CREATE FUNCTION portcullis_unslide(times bigint[], at bigint)
RETURNS bigint[] LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN p IS NULL THEN times ELSE times[:p - 1] || times[p + 1:] END
    FROM (SELECT max(i) AS p FROM unnest(times) WITH ORDINALITY AS a(x, i) WHERE x = at) found
$$;
