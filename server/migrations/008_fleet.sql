-- The worker fleet (smartmeter worker --fleet; server/fleet.py) and resumable re-processing (server/reprocess.py).
-- fleet_queue: photos listed from the image store, waiting to be read. A row goes in the same transaction as the
-- photo's outcome (photos, readings), so a worker killed mid-batch leaves its photos queued.
CREATE TABLE IF NOT EXISTS fleet_queue (
    photo_key TEXT PRIMARY KEY,
    content_hash TEXT NOT NULL,
    size_bytes BIGINT NOT NULL,
    meter_id TEXT NOT NULL,            -- from the photo name ('' when only EXIF can tell)
    ts_ms BIGINT,                      -- capture time from the name; NULL: EXIF, known once read
    listed_ms BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS fleet_queue_meter ON fleet_queue (meter_id, ts_ms, photo_key);

-- fleet_leases: one row per meter with queued photos. A worker claims meters (SELECT ... FOR UPDATE SKIP LOCKED
-- on PostgreSQL) until lease_until_ms; one meter is judged by one worker at a time, oldest photo first. A killed
-- worker's meters are claimed again once the lease has expired.
CREATE TABLE IF NOT EXISTS fleet_leases (
    meter_id TEXT PRIMARY KEY,
    worker TEXT,
    token TEXT,
    lease_until_ms BIGINT NOT NULL DEFAULT 0
);

-- reprocess_done: meters a 'smartmeter reprocess' run has committed (run = a hash of its arguments), so the
-- same command after an interruption goes on where it stopped.
CREATE TABLE IF NOT EXISTS reprocess_done (
    run_id TEXT NOT NULL,
    meter_id TEXT NOT NULL,
    photos INTEGER NOT NULL,
    changed INTEGER NOT NULL,
    done_ms BIGINT NOT NULL,
    PRIMARY KEY (run_id, meter_id)
);
