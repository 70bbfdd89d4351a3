-- name: staff_exists
SELECT 1 FROM staff WHERE staff_id = %(staff_id)s

-- name: set_staff_password
INSERT INTO web_credentials (staff_id, password_hash, set_at)
VALUES (%(staff_id)s, %(hash)s, %(now)s)
ON CONFLICT (staff_id) DO UPDATE SET password_hash = EXCLUDED.password_hash,
                                     set_at = EXCLUDED.set_at

-- name: set_patient_password
INSERT INTO web_credentials (patient_id, password_hash, set_at)
VALUES (%(patient_id)s, %(hash)s, %(now)s)
ON CONFLICT (patient_id) DO UPDATE SET password_hash = EXCLUDED.password_hash,
                                       set_at = EXCLUDED.set_at

-- name: end_sessions_of
-- A new password ends every session the person had (a stolen session dies with it).
UPDATE web_sessions SET ended_at = %(now)s, ended_why = 'password changed'
WHERE ended_at IS NULL
  AND (staff_id = %(staff_id)s OR patient_id = %(patient_id)s)

-- name: credential
-- A user name is a staff id, or a patient's NHS number (digits only).
SELECT c.password_hash, s.staff_id, p.patient_id
FROM web_credentials c
LEFT JOIN staff s ON s.staff_id = c.staff_id
LEFT JOIN patients p ON p.patient_id = c.patient_id
WHERE (c.staff_id = %(username)s AND s.staff_id IS NOT NULL)
   OR (p.nhs_number = %(username)s)

-- name: rehash
UPDATE web_credentials SET password_hash = %(hash)s
WHERE staff_id = %(staff_id)s OR patient_id = %(patient_id)s

-- name: recent_failures
SELECT count(*) FILTER (WHERE username = %(username)s) AS user_failures,
       count(*) FILTER (WHERE remote = %(remote)s) AS remote_failures
FROM sign_in_attempts
WHERE at > %(since)s AND NOT ok AND (username = %(username)s OR remote = %(remote)s)

-- name: record_attempt
INSERT INTO sign_in_attempts (at, username, remote, ok)
VALUES (%(now)s, %(username)s, %(remote)s, %(ok)s)

-- name: create_session
INSERT INTO web_sessions (session_sha256, staff_id, patient_id, csrf_token, created_at,
                          last_seen_at, expires_at)
VALUES (%(digest)s, %(staff_id)s, %(patient_id)s, %(csrf)s, %(now)s, %(now)s, %(expires_at)s)

-- name: session
-- The session and the person it speaks for (gone from the organisation file: no row).
SELECT w.csrf_token, w.created_at, w.last_seen_at, w.expires_at, w.ended_at,
       CASE WHEN w.staff_id IS NOT NULL THEN 'staff' ELSE 'patient' END AS kind,
       COALESCE(w.staff_id, p.nhs_number) AS subject,
       COALESCE(s.name, p.display_name) AS name,
       COALESCE(s.team_id, p.team_id) AS team_id,
       COALESCE(s.roles, '{}') AS roles,
       w.patient_id
FROM web_sessions w
LEFT JOIN staff s ON s.staff_id = w.staff_id
LEFT JOIN patients p ON p.patient_id = w.patient_id
WHERE w.session_sha256 = %(digest)s AND (s.staff_id IS NOT NULL OR p.patient_id IS NOT NULL)

-- name: touch_session
UPDATE web_sessions SET last_seen_at = %(now)s WHERE session_sha256 = %(digest)s

-- name: end_session
UPDATE web_sessions SET ended_at = %(now)s, ended_why = %(why)s
WHERE session_sha256 = %(digest)s AND ended_at IS NULL

-- name: patient_details
SELECT conditions, practice, care_coordinator, created_at FROM patients
WHERE patient_id = %(patient_id)s

-- name: patient_overrides
-- The clinicians' overrides and their version (read only; a change locks the row).
SELECT overrides, version, updated_by, updated_at, reason FROM patient_rules
WHERE patient_id = %(patient_id)s

-- name: chart_raw
SELECT time, metric, value, NULL::double precision AS min, NULL::double precision AS max
FROM readings
WHERE patient_id = %(patient_id)s AND time >= %(since)s AND time < %(until)s
ORDER BY metric, time

-- name: chart_hourly
SELECT bucket AS time, metric, mean AS value, min, max FROM readings_hourly
WHERE patient_id = %(patient_id)s AND bucket >= %(since)s AND bucket < %(until)s
ORDER BY metric, bucket

-- name: chart_daily
SELECT bucket AS time, metric, mean AS value, min, max FROM readings_daily
WHERE patient_id = %(patient_id)s AND bucket >= %(since)s AND bucket < %(until)s
ORDER BY metric, bucket

-- name: patient_devices
SELECT d.device_id, d.kind, d.last_msg_at, d.battery, d.firmware, d.status, d.status_at,
       b.valid_from
FROM device_bindings b JOIN devices d USING (device_id)
WHERE b.patient_id = %(patient_id)s AND b.valid_to IS NULL
ORDER BY d.device_id

-- name: late_to_review
SELECT review_id, rule_id, measured_at, received_at, value, message FROM late_reviews
WHERE patient_id = %(patient_id)s AND reviewed_at IS NULL
ORDER BY measured_at

-- name: close_review
UPDATE late_reviews SET reviewed_by = %(by)s, reviewed_at = %(now)s
WHERE review_id = %(review_id)s AND patient_id = %(patient_id)s AND reviewed_at IS NULL
RETURNING review_id

-- name: lock_overrides
SELECT overrides, version FROM patient_rules WHERE patient_id = %(patient_id)s FOR UPDATE

-- name: save_overrides
-- Applied only over the version the clinician edited: a concurrent save that got there
-- first leaves no row to update (or already inserted it), and nothing is applied.
INSERT INTO patient_rules (patient_id, overrides, version, updated_by, reason)
VALUES (%(patient_id)s, %(overrides)s, %(version)s, %(by)s, %(reason)s)
ON CONFLICT (patient_id) DO UPDATE
   SET overrides = EXCLUDED.overrides, version = EXCLUDED.version, updated_at = now(),
       updated_by = EXCLUDED.updated_by, reason = EXCLUDED.reason
   WHERE patient_rules.version = EXCLUDED.version - 1
RETURNING version

-- name: backtest_readings
SELECT time, metric, value, late, on_oxygen, consciousness FROM readings
WHERE patient_id = %(patient_id)s AND time >= %(since)s AND time < %(until)s
ORDER BY time, metric

-- name: own_record
SELECT patient_id, nhs_number, display_name, team_id, conditions FROM patients
WHERE patient_id = %(patient_id)s

-- name: own_messages
-- What the team's service sent to the patient's devices (the device feedback).
SELECT DISTINCT ON (n.alert_id) n.created_at, n.payload->>'message' AS message,
       n.delivered_at
FROM notifications n JOIN alerts a USING (alert_id)
WHERE a.patient_id = %(patient_id)s AND n.channel = 'feedback'
ORDER BY n.alert_id DESC, n.created_at
LIMIT 20

-- name: alert_page
SELECT a.alert_id, a.state, a.priority, a.kind, a.rule_id, a.message, a.latest_value,
       a.worst_value, a.condition_cleared, a.opened_at, a.acknowledged_by, a.resolved_at,
       a.outcome, a.team_id, p.nhs_number, p.display_name
FROM alerts a JOIN patients p USING (patient_id)
WHERE a.alert_id = %(alert_id)s

-- name: alert_events
SELECT event_id, at, kind, actor, data FROM alert_events
WHERE alert_id = %(alert_id)s ORDER BY event_id

-- name: alert_notifications
SELECT n.notification_id, n.channel, n.target, n.created_at, n.attempts, n.delivered_at,
       n.last_error,
       COALESCE((SELECT json_agg(json_build_object('at', t.at, 'ok', t.ok, 'detail', t.detail)
                                 ORDER BY t.attempt_id)
                 FROM notification_attempts t WHERE t.notification_id = n.notification_id),
                '[]') AS tries
FROM notifications n WHERE n.alert_id = %(alert_id)s
ORDER BY n.notification_id
