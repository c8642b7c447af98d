-- 001: meters and readings (portable SQL: runs on SQLite and PostgreSQL).
-- Timestamps are integer milliseconds since the Unix epoch, UTC (ts_ms, created_ms).
-- The natural key of a reading is (meter_id, ts_ms, source): the same photo or the same CSV row
-- stored twice is one row. Several sources may hold a value for the same meter and time.

CREATE TABLE meters (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL DEFAULT '',
    created_ms  BIGINT NOT NULL
);

CREATE TABLE readings (
    meter_id        TEXT NOT NULL REFERENCES meters (id),
    ts_ms           BIGINT NOT NULL,
    value_kwh       DOUBLE PRECISION NOT NULL CHECK (value_kwh >= 0),
    power_w         DOUBLE PRECISION,
    source          TEXT NOT NULL,
    confidence      DOUBLE PRECISION NOT NULL DEFAULT 1.0 CHECK (confidence >= 0 AND confidence <= 1),
    reader_version  TEXT NOT NULL DEFAULT '',
    status          TEXT NOT NULL DEFAULT 'accepted'
                    CHECK (status IN ('accepted', 'corrected', 'superseded')),
    created_ms      BIGINT NOT NULL,
    PRIMARY KEY (meter_id, ts_ms, source)
);
