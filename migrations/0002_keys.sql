-- Key sets shared by every replica (issue 16, point 4): the session signing keys with the
-- identity-assertion keys (JSON, as the keys file held them), and the device key's check
-- value. Replaced only by compare-and-swap on `version` (src/store/postgres/mod.rs
-- `swap_keyset`), so two replicas rotating at once cannot lose a key.

CREATE TABLE portcullis_keysets (
    name    text COLLATE "C" PRIMARY KEY,
    version bigint NOT NULL CHECK (version > 0),
    data    bytea NOT NULL
);
