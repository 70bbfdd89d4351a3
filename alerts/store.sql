-- name: rule_versions
-- What each patient's state is built from, read without locking (warming up).
SELECT p.patient_id, COALESCE(s.seq, 0) AS seq, COALESCE(r.version, 0) AS version,
       p.conditions
FROM patients p LEFT JOIN patient_rules r USING (patient_id)
LEFT JOIN patient_rule_state s USING (patient_id)
WHERE p.patient_id = ANY(%(ids)s)

-- name: lock_rule_state
-- The batch's patients, locked in patient id order (two workers never deadlock) until the
-- batch commits, each ``seq`` bumped: a worker that waited here sees the other's readings
-- and its new ``seq``. Returns the ``seq`` before this batch (what the window must have
-- been built at to be current), the rules' version and the conditions.
WITH bumped AS (
    UPDATE patient_rule_state s SET seq = s.seq + 1
    WHERE s.patient_id IN (SELECT patient_id FROM patient_rule_state
                           WHERE patient_id = ANY(%(ids)s)
                           ORDER BY patient_id FOR NO KEY UPDATE)
    RETURNING s.patient_id, s.seq - 1 AS seq
)
SELECT b.patient_id, b.seq, COALESCE(r.version, 0) AS version, p.conditions,
       EXISTS (SELECT 1 FROM rule_backlog k WHERE k.patient_id = b.patient_id) AS backlog
FROM bumped b JOIN patients p USING (patient_id) LEFT JOIN patient_rules r USING (patient_id)

-- name: bump_rule_state
-- After a rule stage failed (its savepoint rolled back): the patients' readings are
-- committed without rules, so every worker's window of them is out of date.
UPDATE patient_rule_state SET seq = seq + 1
WHERE patient_id IN (SELECT patient_id FROM patient_rule_state WHERE patient_id = ANY(%(ids)s)
                     ORDER BY patient_id FOR NO KEY UPDATE)

-- name: backlog_readings
-- Readings kept for re-evaluation, evaluated again with their patient's next batch; one
-- measured before ``stale_before`` is evaluated as late (history, never a current alert).
SELECT r.time, r.patient_id, r.device_id, r.metric, r.value, r.received_at, r.msg_id,
       r.on_oxygen, r.consciousness, r.late OR r.time < %(stale_before)s AS late, r.flags
FROM rule_backlog k
JOIN readings r USING (device_id, msg_id, metric, time)
WHERE k.patient_id = ANY(%(ids)s)

-- name: keep_for_reevaluation
INSERT INTO rule_backlog (device_id, msg_id, metric, time, patient_id, error)
SELECT * FROM unnest(%(device_ids)s::text[], %(msg_ids)s::text[], %(metrics)s::text[],
                     %(times)s::timestamptz[], %(patient_ids)s::int[], %(errors)s::text[])
ON CONFLICT (device_id, msg_id, metric, time) DO UPDATE
   SET attempts = rule_backlog.attempts + 1, error = EXCLUDED.error, failed_at = now()

-- name: reevaluated
DELETE FROM rule_backlog WHERE patient_id = ANY(%(ids)s)

-- name: bound_patients
SELECT DISTINCT patient_id FROM device_bindings WHERE valid_to IS NULL ORDER BY patient_id

-- name: patient_rule_inputs
SELECT p.patient_id, p.team_id, p.conditions, COALESCE(r.version, 0) AS version,
       COALESCE(r.overrides, '{}'::jsonb) AS overrides
FROM patients p LEFT JOIN patient_rules r USING (patient_id)
WHERE p.patient_id = ANY(%(ids)s)

-- name: patient_history
-- The windows a restarted worker needs: 35 days, newest 4096 per patient and metric (the
-- caller leaves out the readings it is about to evaluate: device_id and msg_id name them).
-- Questionable readings (alerts/quality.py) never enter a window.
SELECT patient_id, metric, time, value, on_oxygen, consciousness, device_id, msg_id
FROM (
    SELECT r.*, row_number() OVER (PARTITION BY patient_id, metric ORDER BY time DESC) AS n
    FROM readings r
    WHERE patient_id = ANY(%(ids)s) AND time > %(since)s
      AND (flags IS NULL OR NOT homeward_questionable(metric, flags))
) recent
WHERE n <= 4096
ORDER BY patient_id, metric, time

-- name: breached_rules
SELECT patient_id, rule_id FROM alerts
WHERE patient_id = ANY(%(ids)s) AND state <> 'resolved' AND NOT condition_cleared

-- name: notify_teams
-- The team's live stream (relayed by the HTTP API as server-sent events): one NOTIFY per
-- alert raised or updated by this batch, delivered at COMMIT. ``measured_at`` is the
-- batch's first hit of that alert, so a listener can tell how fresh the news is.
SELECT pg_notify('homeward_team_' || a.team_id,
                 json_build_object('alert_id', a.alert_id, 'event', e.event,
                                   'priority', a.priority, 'measured_at', e.measured_at)::text)
FROM unnest(%(alert_ids)s::bigint[], %(events)s::text[], %(measured_at)s::timestamptz[])
     AS e (alert_id, event, measured_at)
JOIN alerts a USING (alert_id)
WHERE a.team_id IS NOT NULL

-- name: insert_review
INSERT INTO late_reviews (patient_id, rule_id, measured_at, received_at, value, message)
VALUES (%(patient_id)s, %(rule_id)s, %(at)s, now(), %(value)s, %(message)s)
ON CONFLICT (patient_id, rule_id, measured_at) DO NOTHING

-- name: queue_feedback
-- To the device that took the reading only, and only while it is still the patient's.
INSERT INTO notifications (alert_id, channel, target, payload, idempotency_key)
SELECT %(alert_id)s::bigint, 'feedback', b.device_id, %(payload)s,
       'alert-' || %(alert_id)s::bigint || '-feedback-' || b.device_id
FROM device_bindings b
WHERE b.device_id = %(device_id)s AND b.patient_id = %(patient_id)s AND b.valid_to IS NULL
ON CONFLICT (idempotency_key) DO NOTHING

-- name: queue_retake
-- A questionable reading: ask the device that took it to measure again (no alert behind
-- it). Once per device and measurement time, however often the message is redelivered.
INSERT INTO notifications (alert_id, channel, target, payload, idempotency_key)
SELECT NULL, 'feedback', b.device_id, %(payload)s, %(key)s
FROM device_bindings b
WHERE b.device_id = %(device_id)s AND b.patient_id = %(patient_id)s AND b.valid_to IS NULL
ON CONFLICT (idempotency_key) DO NOTHING
