-- 002: the camera worker (portable SQL: runs on SQLite and PostgreSQL). Times are epoch milliseconds, UTC.
-- photos: every photo the worker has seen, with what became of it (one row per key; content_hash dedupes
--   re-deliveries). status: published | held | suspect | rejected | failed | duplicate | corrected | withdrawn
--   | reviewed. value_kwh is what the reader saw; published_kwh what is stored in readings (after corrections).
-- review_queue: photos a person should look at (rejected, withdrawn), with the reason.
-- corrections: audit of every change to a stored camera reading (what, old -> new, why, from which photos).
-- worker_cursor: where the worker is in each image store's listing.

CREATE TABLE photos (
    photo_key       TEXT PRIMARY KEY,
    content_hash    TEXT NOT NULL,
    meter_id        TEXT,
    ts_ms           BIGINT,
    ts_source       TEXT NOT NULL DEFAULT 'name',
    status          TEXT NOT NULL,
    value_kwh       DOUBLE PRECISION,
    published_kwh   DOUBLE PRECISION,
    reading         TEXT,
    digits          TEXT NOT NULL DEFAULT '[]',
    fine_kwh        DOUBLE PRECISION,
    confidence      DOUBLE PRECISION NOT NULL DEFAULT 0,
    reader_version  TEXT NOT NULL DEFAULT '',
    reason          TEXT NOT NULL DEFAULT '',
    updated_ms      BIGINT NOT NULL
);
CREATE INDEX photos_meter_ts ON photos (meter_id, ts_ms);
CREATE INDEX photos_hash ON photos (content_hash);
CREATE INDEX photos_status ON photos (meter_id, status);

CREATE TABLE review_queue (
    photo_key       TEXT PRIMARY KEY REFERENCES photos (photo_key),
    meter_id        TEXT,
    ts_ms           BIGINT,
    value_read      DOUBLE PRECISION,
    reason          TEXT NOT NULL,
    state           TEXT NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'resolved')),
    resolved_value  DOUBLE PRECISION,
    created_ms      BIGINT NOT NULL,
    resolved_ms     BIGINT
);
CREATE INDEX review_queue_state ON review_queue (state, meter_id, ts_ms);

CREATE TABLE corrections (
    id              TEXT PRIMARY KEY,
    meter_id        TEXT NOT NULL,
    ts_ms           BIGINT NOT NULL,
    photo_key       TEXT NOT NULL,
    kind            TEXT NOT NULL,
    old_value       DOUBLE PRECISION,
    new_value       DOUBLE PRECISION,
    old_reader      TEXT NOT NULL DEFAULT '',
    new_reader      TEXT NOT NULL DEFAULT '',
    reason          TEXT NOT NULL,
    evidence        TEXT NOT NULL DEFAULT '',
    created_ms      BIGINT NOT NULL
);
CREATE INDEX corrections_meter_ts ON corrections (meter_id, ts_ms);

CREATE TABLE worker_cursor (
    store           TEXT PRIMARY KEY,
    cursor          TEXT NOT NULL,
    updated_ms      BIGINT NOT NULL
);
