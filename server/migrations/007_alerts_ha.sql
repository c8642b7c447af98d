-- 007: alerts and Home Assistant (server/alerts.py, server/alerts_channels.py, server/ha_discovery.py).
-- alert_state: per meter and rule, whether the condition held at the last pass (active), what was last told (notified:
--   alert | ok), when the last alert went out (the quiet period runs from it), the newest event start already judged
--   (seen_event_ms: a closed event newer than it still raises the alert once), messages made so far (seq), alerts
--   held back by the quiet period (suppressed).
-- alert_outbox: one row per message and channel, kept after delivery (sent_ms); a failed try sets next_try_ms
--   (backoff) and last_error. Rows are never deleted by the program: a restart finds every undelivered message.
--   id = <meter>/<rule>/<seq>/<channel>: making the same message twice is a no-op.
-- ha_published: per meter, the largest energy value published to Home Assistant (the series it sees is monotone).

CREATE TABLE alert_state (
    meter_id        TEXT NOT NULL,
    rule            TEXT NOT NULL,
    active          INTEGER NOT NULL DEFAULT 0,
    notified        TEXT NOT NULL DEFAULT 'ok',
    last_alert_ms   BIGINT,
    seen_event_ms   BIGINT,
    seq             INTEGER NOT NULL DEFAULT 0,
    suppressed      INTEGER NOT NULL DEFAULT 0,
    detail          TEXT NOT NULL DEFAULT '',
    updated_ms      BIGINT NOT NULL,
    PRIMARY KEY (meter_id, rule)
);

CREATE TABLE alert_outbox (
    id              TEXT PRIMARY KEY,
    channel         TEXT NOT NULL,
    payload         TEXT NOT NULL,
    created_ms      BIGINT NOT NULL,
    next_try_ms     BIGINT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    sent_ms         BIGINT,
    last_error      TEXT NOT NULL DEFAULT ''
);
CREATE INDEX alert_outbox_due ON alert_outbox (sent_ms, next_try_ms);

CREATE TABLE ha_published (
    meter_id        TEXT PRIMARY KEY,
    energy_kwh      DOUBLE PRECISION NOT NULL,
    ts_ms           BIGINT NOT NULL,
    updated_ms      BIGINT NOT NULL
);
