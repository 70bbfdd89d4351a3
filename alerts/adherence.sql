-- name: patients_with_rules
SELECT p.patient_id, p.conditions, COALESCE(r.overrides, '{}'::jsonb) AS overrides
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

-- name: upsert_technical
-- One open alert per patient and rule; the same deadline (or silence) is recorded once.
INSERT INTO alerts AS a (patient_id, rule_id, kind, metric, priority, team_id,
                         first_measured_at, latest_measured_at, message, details)
VALUES (%(patient_id)s, %(rule_id)s, %(kind)s, %(metric)s, 'technical',
        (SELECT team_id FROM patients WHERE patient_id = %(patient_id)s),
        %(at)s, %(at)s, %(message)s, %(details)s)
ON CONFLICT (patient_id, rule_id) WHERE state <> 'resolved' DO UPDATE SET
    hit_count = a.hit_count + 1,
    latest_measured_at = EXCLUDED.latest_measured_at,
    message = EXCLUDED.message,
    details = EXCLUDED.details,
    updated_at = now()
WHERE a.latest_measured_at < EXCLUDED.latest_measured_at
RETURNING alert_id, (xmax = 0) AS created
