-- Audit records of every replica in one place (issue 16, point 1): one row per record, the
-- JSON line src/audit.rs writes, made at `at_ms` (unix ms). `id` orders records of one
-- millisecond as they were appended. Dropped after 90 days by the purge
-- (src/store/mod.rs `AUDIT_RETENTION`).

CREATE TABLE portcullis_audit (
    id    bigserial PRIMARY KEY,
    at_ms bigint NOT NULL,
    line  text NOT NULL
);

CREATE INDEX portcullis_audit_at_ms ON portcullis_audit (at_ms, id);
