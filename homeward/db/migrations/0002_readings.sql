-- Time series of canonical readings: one row per metric value.
-- depends: 0001_registry

CREATE TABLE readings (
    time           timestamptz NOT NULL,       -- measured_at, UTC
    patient_id     integer NOT NULL,
    device_id      text NOT NULL,
    metric         text NOT NULL,
    value          double precision NOT NULL,  -- in the metric's canonical UCUM unit
    received_at    timestamptz NOT NULL,
    msg_id         text NOT NULL,
    flags          text[],                     -- device status flags, 'implausible'
    on_oxygen      boolean,                    -- NEWS2 context sent with the message
    consciousness  char(1),
    late           boolean NOT NULL DEFAULT false  -- measured long before it arrived
);

-- Duplicate deliveries are absorbed here (the key includes the time column, as
-- TimescaleDB requires of unique indexes on hypertables).
CREATE UNIQUE INDEX readings_once ON readings (device_id, msg_id, metric, time);
CREATE INDEX readings_patient_time ON readings (patient_id, time DESC);
