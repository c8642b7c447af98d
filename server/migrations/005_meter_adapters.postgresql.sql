-- 005: the per-meter digit adapter (server/adapter.py, docs/adapter.md; portable SQL, times epoch ms UTC).
-- meter_adapters: one row per meter that has had an adapter: its version (raised by every change, reset
--   included; readings made with it carry reader_version '<model>+adapt<version>'), how many labelled digit crops
--   it holds (at most adapter.max_examples), and the crops themselves (numpy .npz: float16 32x20 crops, digits).

CREATE TABLE meter_adapters (
    meter_id    TEXT PRIMARY KEY,
    version     INTEGER NOT NULL CHECK (version >= 0),
    examples    INTEGER NOT NULL CHECK (examples >= 0),
    bytes       BIGINT NOT NULL CHECK (bytes >= 0),
    data        BYTEA,
    updated_ms  BIGINT NOT NULL
);
