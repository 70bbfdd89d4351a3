-- name: patients_with_rules
-- overrides as text: the key patients with the same rules share (jsonb's text is canonical)
SELECT p.patient_id, p.conditions, COALESCE(r.overrides, '{}'::jsonb)::text AS overrides
FROM patients p LEFT JOIN patient_rules r USING (patient_id)

-- name: last_readings
SELECT patient_id, metric, max(time) AS last_at
FROM readings
WHERE time > %(since)s AND metric = ANY(%(metrics)s)
GROUP BY patient_id, metric

-- name: bound_devices
SELECT d.device_id, d.kind, d.status, d.last_msg_at, b.patient_id
FROM devices d
JOIN device_bindings b ON b.device_id = d.device_id AND b.valid_to IS NULL

-- name: pending_retakes
-- Each patient's and metric's newest questionable reading (alerts/quality.py, measured
-- when it arrived) with no good reading of that metric measured after it.
SELECT q.patient_id, q.metric, q.time, q.device_id, q.flags
FROM (
    SELECT DISTINCT ON (patient_id, metric) patient_id, metric, time, device_id, flags
    FROM readings
    WHERE flags IS NOT NULL AND time > %(since)s AND NOT late
      AND homeward_questionable(metric, flags)
    ORDER BY patient_id, metric, time DESC
) q
WHERE NOT EXISTS (
    SELECT 1 FROM readings g
    WHERE g.patient_id = q.patient_id AND g.metric = q.metric AND g.time > q.time
      AND (g.flags IS NULL OR NOT homeward_questionable(g.metric, g.flags))
)

-- name: recorded_technical
-- The newest deadline or silence already recorded per patient and rule, by an open alert
-- or by one a person resolved recently: a resolved miss is not raised again for the same
-- day, nor a resolved silence for the same last message (the next one is).
SELECT patient_id, rule_id, max(latest_measured_at) FROM alerts
WHERE priority = 'technical' AND (state <> 'resolved' OR resolved_at > %(since)s)
GROUP BY patient_id, rule_id

-- name: upsert_technical
-- One open alert per patient and rule; the same deadline (or silence) is recorded once
-- (the update only moves an alert forward in time). Every candidate of a pass in one
-- statement; only the alerts raised or moved on are returned.
INSERT INTO alerts AS a (patient_id, rule_id, kind, metric, priority, team_id,
                         first_measured_at, latest_measured_at, message, details)
SELECT c.patient_id, c.rule_id, c.kind, c.metric, 'technical', p.team_id, c.at, c.at,
       c.message, c.details
FROM unnest(%(patient_id)s::integer[], %(rule_id)s::text[], %(kind)s::text[],
            %(metric)s::text[], %(at)s::timestamptz[], %(message)s::text[],
            %(details)s::jsonb[])
     AS c (patient_id, rule_id, kind, metric, at, message, details)
JOIN patients p USING (patient_id)
ON CONFLICT (patient_id, rule_id) WHERE state <> 'resolved' DO UPDATE SET
    hit_count = a.hit_count + 1,
    latest_measured_at = EXCLUDED.latest_measured_at,
    message = EXCLUDED.message,
    details = EXCLUDED.details,
    updated_at = now()
WHERE a.latest_measured_at < EXCLUDED.latest_measured_at
RETURNING a.alert_id, (a.xmax = 0) AS created, a.message
