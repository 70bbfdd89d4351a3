-- name: create_incoming
-- A per-connection staging table; COPY lands here, then one set-based INSERT resolves
-- each device's binding at the reading's own time and de-duplicates.
CREATE TEMP TABLE IF NOT EXISTS incoming (
    seq           integer NOT NULL,
    time          timestamptz NOT NULL,
    device_id     text NOT NULL,
    metric        text NOT NULL,
    value         double precision NOT NULL,
    received_at   timestamptz NOT NULL,
    msg_id        text NOT NULL,
    flags         text[],
    on_oxygen     boolean,
    consciousness char(1),
    late          boolean NOT NULL,
    claimed_nhs   text,
    device_seq    bigint
) ON COMMIT DELETE ROWS

-- name: copy_incoming
COPY incoming (seq, time, device_id, metric, value, received_at, msg_id, flags, on_oxygen,
               consciousness, late, claimed_nhs, device_seq) FROM STDIN (FORMAT BINARY)

-- name: unresolved_messages
-- Messages that cannot be stored: unknown device, no binding at that time, or a payload
-- that names a different patient than the binding (the binding wins; security event).
SELECT DISTINCT ON (i.seq) i.seq,
       CASE WHEN d.device_id IS NULL THEN 'unknown_device'
            WHEN b.binding_id IS NULL THEN 'unbound_device'
            ELSE 'patient_mismatch' END AS reason,
       p.nhs_number AS bound_nhs
FROM incoming i
LEFT JOIN devices d ON d.device_id = i.device_id
LEFT JOIN device_bindings b
       ON b.device_id = i.device_id AND b.valid_from <= i.time
      AND (b.valid_to IS NULL OR i.time < b.valid_to)
LEFT JOIN patients p ON p.patient_id = b.patient_id
WHERE b.binding_id IS NULL OR (i.claimed_nhs IS NOT NULL AND i.claimed_nhs <> p.nhs_number)
ORDER BY i.seq

-- name: store_readings
INSERT INTO readings (time, patient_id, device_id, metric, value, received_at, msg_id, flags,
                      on_oxygen, consciousness, late, device_seq)
SELECT i.time, b.patient_id, i.device_id, i.metric, i.value, i.received_at, i.msg_id, i.flags,
       i.on_oxygen, i.consciousness, i.late, i.device_seq
FROM incoming i
JOIN device_bindings b
  ON b.device_id = i.device_id AND b.valid_from <= i.time AND (b.valid_to IS NULL OR i.time < b.valid_to)
JOIN patients p ON p.patient_id = b.patient_id
WHERE i.claimed_nhs IS NULL OR i.claimed_nhs = p.nhs_number
ON CONFLICT DO NOTHING
RETURNING time, patient_id, device_id, metric, value, received_at, msg_id, on_oxygen,
          consciousness, late, flags

-- name: conflicting_messages
-- Messages of this batch with the key of a stored reading (device, message id, metric,
-- time) but another value or sequence number: not a redelivery but a conflict. Only run
-- when a batch stored fewer rows than it offered.
SELECT i.seq, i.metric, r.value, i.value, r.device_seq, i.device_seq
FROM incoming i
JOIN readings r ON r.device_id = i.device_id AND r.msg_id = i.msg_id
               AND r.metric = i.metric AND r.time = i.time
WHERE r.value <> i.value OR r.device_seq <> i.device_seq  -- a NULL sequence: not compared
ORDER BY i.seq

-- name: drop_conflicting_rows
-- The rows this batch's INSERT had just stored for a conflicting message (other metrics
-- of it): a conflicting message is stored not at all. received_at tells this delivery's
-- rows from those stored by an earlier one.
DELETE FROM readings r USING incoming i
WHERE i.seq = ANY(%(seqs)s) AND r.device_id = i.device_id AND r.msg_id = i.msg_id
  AND r.metric = i.metric AND r.time = i.time AND r.received_at = i.received_at
  AND r.value = i.value AND r.device_seq IS NOT DISTINCT FROM i.device_seq
RETURNING r.device_id, r.msg_id, r.metric, r.time

-- name: advance_sequences
-- Each device's sequence numbers (device_seq): the highest seen, and the numbers below it
-- never received (missing). A number received fills its hole, whichever worker and batch
-- it comes in; a jump past the highest opens one. missing_since: when the oldest still
-- open hole appeared (the data-gap alert waits a grace period for late deliveries).
INSERT INTO device_sequences AS s (device_id, high, missing, last_received, missing_since)
SELECT device_id, max(device_seq),
       int8multirange(int8range(min(device_seq), max(device_seq), '[]'))
           - range_agg(int8range(device_seq, device_seq, '[]')),
       range_agg(int8range(device_seq, device_seq, '[]')),
       CASE WHEN int8multirange(int8range(min(device_seq), max(device_seq), '[]'))
                 - range_agg(int8range(device_seq, device_seq, '[]')) <> '{}'::int8multirange
            THEN now() END
FROM (SELECT DISTINCT i.device_id, i.device_seq FROM incoming i
      JOIN devices d ON d.device_id = i.device_id
      WHERE i.device_seq IS NOT NULL AND NOT (i.seq = ANY(%(skip)s))
        -- the largest bigint has no successor to bound its range: not tracked
        AND i.device_seq < 9223372036854775807) got
GROUP BY device_id
ORDER BY device_id
ON CONFLICT (device_id) DO UPDATE SET
    high = GREATEST(s.high, EXCLUDED.high),
    missing = (s.missing + CASE WHEN EXCLUDED.high > s.high + 1
                                THEN int8multirange(int8range(s.high + 1, EXCLUDED.high, '[)'))
                                ELSE '{}'::int8multirange END)
              - EXCLUDED.last_received,
    last_received = EXCLUDED.last_received,
    missing_since = CASE
        WHEN (s.missing + CASE WHEN EXCLUDED.high > s.high + 1
                               THEN int8multirange(int8range(s.high + 1, EXCLUDED.high, '[)'))
                               ELSE '{}'::int8multirange END)
             - EXCLUDED.last_received = '{}'::int8multirange THEN NULL
        ELSE COALESCE(s.missing_since, now()) END

-- name: quarantine_message
-- The payload kept is a bounded prefix; its size and hash are the whole payload's.
INSERT INTO quarantine (first_received_at, last_received_at, times_seen, topic, device_id,
                        msg_id, reason, detail, payload, payload_bytes, payload_sha256,
                        security_event)
VALUES (%(received_at)s, %(received_at)s, %(times)s, %(topic)s, %(device_id)s, %(msg_id)s,
        %(reason)s, %(detail)s, %(payload)s, %(payload_bytes)s, %(payload_sha256)s,
        %(security_event)s)
ON CONFLICT ON CONSTRAINT quarantine_once DO UPDATE
   SET times_seen = quarantine.times_seen + EXCLUDED.times_seen,
       last_received_at = GREATEST(quarantine.last_received_at, EXCLUDED.last_received_at)

-- name: touch_devices
-- Refresh the device activity cache (last message, battery, firmware, status).
UPDATE devices d
   SET last_msg_at = GREATEST(d.last_msg_at, s.last_msg_at),
       battery     = COALESCE(s.battery, d.battery),
       firmware    = COALESCE(s.firmware, d.firmware),
       status      = COALESCE(s.status, d.status),
       status_at   = CASE WHEN s.status IS NULL THEN d.status_at ELSE s.status_at END
  FROM unnest(%(device_ids)s::text[], %(last_msg_at)s::timestamptz[], %(battery)s::real[],
              %(firmware)s::text[], %(status)s::text[], %(status_at)s::timestamptz[])
       AS s (device_id, last_msg_at, battery, firmware, status, status_at)
 WHERE d.device_id = s.device_id
