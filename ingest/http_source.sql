-- name: posted_quarantine
-- A posted message that was quarantined: its reason (the same bytes on the same topic
-- are one quarantine row, however often they come).
SELECT reason, detail FROM quarantine
WHERE topic = %(topic)s AND payload_sha256 = %(digest)s

-- name: posted_readings
-- The rows of a posted message, and whether this post stored them (received at its own
-- time, to the millisecond) or an earlier one did.
SELECT count(*) AS n,
       bool_and(abs(extract(epoch FROM received_at) - %(received_at)s::float8) < 0.001) AS fresh
FROM readings
WHERE device_id = %(device_id)s AND msg_id = %(msg_id)s
