-- Device sequence numbers: stored with each reading, and per device the numbers never
-- received, so a lost or quarantined message becomes a data-gap technical alert
-- (ingest/writer.sql advance_sequences, alerts/data_gaps.py).
-- depends: 0011_ingest_members

ALTER TABLE readings ADD COLUMN device_seq bigint;  -- the payload's device_seq, when sent

CREATE TABLE device_sequences (
    device_id      text PRIMARY KEY REFERENCES devices (device_id),
    high           bigint NOT NULL,                 -- the highest number received
    missing        int8multirange NOT NULL DEFAULT '{}',  -- below high, never received
    last_received  int8multirange NOT NULL DEFAULT '{}',  -- the latest batch's numbers
    missing_since  timestamptz,                     -- a hole open since (NULL: none)
    alerted        int8multirange NOT NULL DEFAULT '{}'   -- holes already alerted on
);
CREATE INDEX device_sequences_open ON device_sequences (missing_since)
    WHERE missing_since IS NOT NULL;
