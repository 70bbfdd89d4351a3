-- name: org_latest
SELECT version, document FROM org_versions ORDER BY version DESC LIMIT 1

-- name: org_insert
INSERT INTO org_versions (sha256, document) VALUES (%(sha)s, %(document)s)
ON CONFLICT (sha256) DO NOTHING RETURNING version

-- name: unplanned_alerts
-- Alerts to plan: raised since the last tick (no policy yet) or to be planned again from
-- ``plan_from`` (their priority rose), oldest first. ``last_step``: numbering goes on.
SELECT a.alert_id, a.team_id, a.priority, COALESCE(a.plan_from, a.opened_at) AS plan_from,
       a.policy IS NOT NULL AS again,
       (SELECT COALESCE(max(s.step_no), 0) FROM escalation_steps s
        WHERE s.alert_id = a.alert_id) AS last_step
FROM alerts a
WHERE (a.policy IS NULL OR a.plan_from IS NOT NULL) AND a.state <> 'resolved'
  AND a.team_id IS NOT NULL
ORDER BY a.alert_id
LIMIT 500
FOR UPDATE OF a SKIP LOCKED

-- name: set_policy
-- The plan in force; escalation looks at the alert in this tick.
UPDATE alerts SET policy = %(policy)s, plan_from = NULL, escalation_due_at = %(now)s
WHERE alert_id = %(alert_id)s

-- name: replace_policy
-- Planned again at a step's due time (the hours changed the ladder).
UPDATE alerts SET policy = %(policy)s WHERE alert_id = %(alert_id)s

-- name: withdraw_steps
-- A new plan replaces the unfired steps of the old one (kept, marked withdrawn).
UPDATE escalation_steps SET withdrawn_at = %(now)s
WHERE alert_id = %(alert_id)s AND fired_at IS NULL AND withdrawn_at IS NULL

-- name: last_step
SELECT COALESCE(max(step_no), 0) FROM escalation_steps WHERE alert_id = %(alert_id)s

-- name: insert_step
INSERT INTO escalation_steps (alert_id, step_no, level, due_at, targets, planned_at)
VALUES (%(alert_id)s, %(step_no)s, %(level)s, %(due_at)s, %(targets)s, %(planned_at)s)
ON CONFLICT DO NOTHING

-- name: escalation_candidates
-- Alerts escalation must look at now: their ``escalation_due_at`` (a step, an expiry, a
-- snooze's end) has come, or a notification to the current level is waiting, or (a safety
-- net for a row or step written without the time) an open alert has a step whose planned
-- time has come — decided, it fires only if due once holds are allowed for. Soonest
-- first. Locked, so an acknowledgement committed first wins; each alert decided alone.
SELECT a.alert_id FROM alerts a
WHERE a.state <> 'resolved' AND a.policy IS NOT NULL AND a.plan_from IS NULL
  AND (a.escalation_due_at <= %(now)s
       OR EXISTS (SELECT 1 FROM notify_requests r
                  WHERE r.alert_id = a.alert_id AND r.sent_at IS NULL)
       OR (a.state = 'open' AND (a.snoozed_until IS NULL OR a.snoozed_until <= %(now)s)
           AND EXISTS (SELECT 1 FROM escalation_steps s
                       WHERE s.alert_id = a.alert_id AND s.fired_at IS NULL
                         AND s.withdrawn_at IS NULL AND s.due_at <= %(now)s)))
ORDER BY a.escalation_due_at NULLS FIRST, a.alert_id
LIMIT 200
FOR UPDATE OF a SKIP LOCKED

-- name: mark_fired
UPDATE escalation_steps SET fired_at = %(now)s
WHERE alert_id = %(alert_id)s AND step_no = %(step_no)s

-- name: pending_requests
SELECT request_id, targets, reason FROM notify_requests
WHERE alert_id = %(alert_id)s AND sent_at IS NULL
ORDER BY request_id

-- name: request_sent
UPDATE notify_requests SET sent_at = %(now)s WHERE request_id = %(request_id)s

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
