-- name: org_latest
SELECT version, document FROM org_versions ORDER BY version DESC LIMIT 1

-- name: org_insert
INSERT INTO org_versions (sha256, document) VALUES (%(sha)s, %(document)s)
ON CONFLICT (sha256) DO NOTHING RETURNING version

-- name: unplanned_alerts
-- Alerts that have no escalation plan yet (raised since the last tick), oldest first.
SELECT a.alert_id, a.team_id, a.priority, a.opened_at
FROM alerts a
WHERE a.policy IS NULL AND a.state <> 'resolved' AND a.team_id IS NOT NULL
ORDER BY a.alert_id
LIMIT 500
FOR UPDATE OF a SKIP LOCKED

-- name: set_policy
UPDATE alerts SET policy = %(policy)s WHERE alert_id = %(alert_id)s

-- name: insert_step
INSERT INTO escalation_steps (alert_id, step_no, level, due_at, targets)
VALUES (%(alert_id)s, %(step_no)s, %(level)s, %(due_at)s, %(targets)s)
ON CONFLICT DO NOTHING

-- name: expired_acknowledgements
SELECT alert_id, acknowledged_at, ack_expires_at, priority, acknowledged_by
FROM alerts
WHERE state = 'acknowledged' AND ack_expires_at <= %(now)s
FOR UPDATE SKIP LOCKED

-- name: shift_unfired_steps
-- Escalation resumes where it paused: unfired steps move on by the time acknowledged.
UPDATE escalation_steps SET due_at = due_at + (%(now)s - %(acknowledged_at)s)
WHERE alert_id = %(alert_id)s AND fired_at IS NULL AND due_at > %(acknowledged_at)s

-- name: due_steps
-- Locks both the step and its alert: an acknowledgement committed first wins, always.
SELECT s.alert_id, s.step_no, s.level, s.targets, a.team_id, a.priority, a.message,
       a.patient_id, a.policy, p.care_coordinator
FROM escalation_steps s JOIN alerts a USING (alert_id) JOIN patients p USING (patient_id)
WHERE s.fired_at IS NULL AND s.due_at <= %(now)s AND a.state = 'open'
  AND (a.snoozed_until IS NULL OR a.snoozed_until <= %(now)s)
ORDER BY s.due_at
LIMIT 200
FOR UPDATE OF s, a SKIP LOCKED

-- name: mark_fired
UPDATE escalation_steps SET fired_at = %(now)s
WHERE alert_id = %(alert_id)s AND step_no = %(step_no)s

-- name: insert_notification
-- Due at the step's firing time (the tick's clock), not the database's wall clock.
INSERT INTO notifications (alert_id, channel, target, payload, idempotency_key, next_attempt_at)
VALUES (%(alert_id)s, %(channel)s, %(target)s, %(payload)s, %(key)s, %(now)s)
ON CONFLICT (idempotency_key) DO NOTHING

-- name: claim_notifications
-- Lease due notifications for 30 s; a crashed sender's lease simply runs out.
UPDATE notifications SET next_attempt_at = %(now)s + interval '30 seconds',
       attempts = attempts + 1
WHERE notification_id IN (
    SELECT notification_id FROM notifications
    WHERE delivered_at IS NULL AND next_attempt_at <= %(now)s
    ORDER BY next_attempt_at LIMIT 50 FOR UPDATE SKIP LOCKED)
RETURNING notification_id, alert_id, channel, target, payload, idempotency_key, attempts

-- name: delivered
UPDATE notifications SET delivered_at = %(now)s, last_error = NULL
WHERE notification_id = %(id)s

-- name: failed
UPDATE notifications SET last_error = %(error)s, next_attempt_at = %(retry_at)s
WHERE notification_id = %(id)s

-- name: attempt
INSERT INTO notification_attempts (notification_id, ok, detail) VALUES (%(id)s, %(ok)s, %(detail)s)

-- name: lock_alert
SELECT state, priority, acknowledged_by, ack_expires_at, snoozed_until, assignee, policy
FROM alerts WHERE alert_id = %(alert_id)s FOR UPDATE
