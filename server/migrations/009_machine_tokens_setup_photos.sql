-- 009: per-meter machine tokens (server/auth.py) and the setup page's reference photos (server/web/setup.py).
-- Portable SQL but for the photo bytes: BLOB here, BYTEA in 009_machine_tokens_setup_photos.postgresql.sql.
-- machine_tokens: one row per token made by `smartmeter user token create`. The token itself is never stored:
--   token_hash is the SHA-256 of the whole token (tokens are 256-bit random, so a fast hash is enough); id is
--   the public part the token begins with (smt_<id>_...), shown by `token list` and used to revoke it. meters
--   lists the meters it may read and write, comma separated. A revoked token keeps its row (revoked_ms set).
-- setup_photos: the last few reference photos uploaded on a meter's setup page (newest = highest seq), so a
--   restarted server resumes a setup; pruned to a few per meter on every upload.

CREATE TABLE machine_tokens (
    id              TEXT PRIMARY KEY,
    name            TEXT NOT NULL,
    token_hash      TEXT NOT NULL,
    meters          TEXT NOT NULL,
    created_ms      BIGINT NOT NULL,
    used_ms         BIGINT,
    revoked_ms      BIGINT
);

CREATE TABLE setup_photos (
    meter_id        TEXT NOT NULL,
    seq             BIGINT NOT NULL CHECK (seq > 0),
    sha256          TEXT NOT NULL,
    bytes           BIGINT NOT NULL CHECK (bytes > 0),
    data            BLOB NOT NULL,
    uploaded_ms     BIGINT NOT NULL,
    PRIMARY KEY (meter_id, seq)
);
