-- 003: changes people make to stored readings, with who, when, why, old and new (portable SQL; times epoch ms UTC).
-- reading_changes: one row per reading a command changed: `smartmeter readings delete|correct` (op delete |
--   correct) and `smartmeter review set|undo` (op review | undo). old_row is the whole row before, as JSON, so a
--   deleted reading can be put back by hand; op_id groups the rows of one command.
-- review_ops: one row per `review set`: what the photo's rows (readings, photos, review_queue) were before and
--   after it, so `review undo` (or setting another value for the same photo) restores the camera readings it
--   withdrew. state: active | undone | replaced.

CREATE TABLE reading_changes (
    id          TEXT PRIMARY KEY,
    op_id       TEXT NOT NULL,
    op          TEXT NOT NULL CHECK (op IN ('delete', 'correct', 'review', 'undo')),
    meter_id    TEXT NOT NULL,
    ts_ms       BIGINT NOT NULL,
    source      TEXT NOT NULL,
    old_value   DOUBLE PRECISION,
    new_value   DOUBLE PRECISION,
    old_row     TEXT,
    who         TEXT NOT NULL,
    why         TEXT NOT NULL,
    created_ms  BIGINT NOT NULL
);
CREATE INDEX reading_changes_meter_ts ON reading_changes (meter_id, ts_ms);
CREATE INDEX reading_changes_op ON reading_changes (op_id);

CREATE TABLE review_ops (
    op_id       TEXT PRIMARY KEY,
    photo_key   TEXT NOT NULL,
    meter_id    TEXT NOT NULL,
    value_kwh   DOUBLE PRECISION NOT NULL,
    before_rows TEXT NOT NULL,
    after_rows  TEXT NOT NULL,
    state       TEXT NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'undone', 'replaced')),
    who         TEXT NOT NULL,
    why         TEXT NOT NULL,
    created_ms  BIGINT NOT NULL,
    undone_ms   BIGINT
);
CREATE INDEX review_ops_key ON review_ops (photo_key, state);
