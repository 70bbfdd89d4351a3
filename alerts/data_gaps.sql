-- name: open_gaps
-- Holes in a device's sequence numbers open for longer than the grace period (late
-- deliveries, e.g. a reclaimed worker's share, fill theirs first) and not alerted on yet,
-- with the patient the device is bound to now.
SELECT s.device_id, b.patient_id, (s.missing - s.alerted)::text, s.missing - s.alerted,
       s.missing_since
FROM device_sequences s
JOIN device_bindings b ON b.device_id = s.device_id AND b.valid_to IS NULL
WHERE s.missing_since < %(before)s AND NOT isempty(s.missing - s.alerted)
ORDER BY s.device_id
FOR UPDATE OF s SKIP LOCKED

-- name: mark_alerted
UPDATE device_sequences SET alerted = alerted + %(holes)s::int8multirange
WHERE device_id = %(device_id)s
