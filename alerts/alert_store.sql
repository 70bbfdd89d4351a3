-- name: lock_alert
-- One alert as the lifecycle decides on it, locked: concurrent commands queue here.
SELECT alert_id, patient_id, rule_id, team_id, priority, opened_at, state, direction,
       message, hit_count, first_value, latest_value, worst_value, first_measured_at,
       latest_measured_at, condition_cleared, policy, acknowledged_at, acknowledged_by,
       ack_expires_at, snoozed_until, snoozed_by, snooze_reason, assignee, resolved_at,
       resolved_by, outcome, last_step_no, escalation_level, notified, holds, updated_at,
       escalation_due_at,
       (SELECT care_coordinator FROM patients p WHERE p.patient_id = alerts.patient_id)
           AS care_coordinator
FROM alerts WHERE alert_id = %(alert_id)s
FOR UPDATE

-- name: lock_unresolved
-- The unresolved alerts of (patient, rule) keys, locked in id order (no deadlocks).
SELECT alert_id, patient_id, rule_id, team_id, priority, opened_at, state, direction,
       message, hit_count, first_value, latest_value, worst_value, first_measured_at,
       latest_measured_at, condition_cleared, policy, acknowledged_at, acknowledged_by,
       ack_expires_at, snoozed_until, snoozed_by, snooze_reason, assignee, resolved_at,
       resolved_by, outcome, last_step_no, escalation_level, notified, holds, updated_at
FROM alerts
WHERE (patient_id, rule_id) IN (
          SELECT * FROM unnest(%(patient_ids)s::integer[], %(rule_ids)s::text[]))
  AND state <> 'resolved'
ORDER BY alert_id
FOR UPDATE

-- name: insert_alert
-- A new alert; another worker's concurrent insert of the same key wins (nothing returned)
-- and this one is decided again on the stored row.
INSERT INTO alerts AS a (patient_id, rule_id, kind, metric, priority, team_id, opened_at,
                         updated_at, first_measured_at, latest_measured_at, first_value,
                         latest_value, worst_value, hit_count, message, details, direction,
                         condition_cleared, policy, plan_from)
VALUES (%(patient_id)s, %(rule_id)s, %(kind)s, %(metric)s, %(priority)s,
        COALESCE(%(team_id)s, (SELECT team_id FROM patients WHERE patient_id = %(patient_id)s)),
        %(opened_at)s, %(updated_at)s, %(first_measured_at)s, %(latest_measured_at)s,
        %(first_value)s, %(latest_value)s, %(worst_value)s, %(count)s, %(message)s,
        %(details)s, %(direction)s, %(condition_cleared)s, %(policy)s, %(plan_from)s)
ON CONFLICT (patient_id, rule_id) WHERE state <> 'resolved' DO NOTHING
RETURNING alert_id

-- name: save_alert
-- Everything the decision may change. ``details`` and ``plan_from`` change only when given.
UPDATE alerts SET
    priority = %(priority)s, state = %(state)s, message = %(message)s,
    hit_count = %(count)s, latest_value = %(latest_value)s, worst_value = %(worst_value)s,
    latest_measured_at = %(latest_measured_at)s, condition_cleared = %(condition_cleared)s,
    acknowledged_at = %(acknowledged_at)s, acknowledged_by = %(acknowledged_by)s,
    ack_expires_at = %(ack_expires_at)s, snoozed_until = %(snoozed_until)s,
    snoozed_by = %(snoozed_by)s, snooze_reason = %(snooze_reason)s,
    assignee = %(assignee)s, resolved_at = %(resolved_at)s, resolved_by = %(resolved_by)s,
    outcome = %(outcome)s, last_step_no = %(last_step_no)s,
    escalation_level = %(escalation_level)s, notified = %(notified)s, holds = %(holds)s,
    updated_at = %(updated_at)s,
    details = COALESCE(%(details)s, details),
    plan_from = COALESCE(%(plan_from)s, plan_from)
WHERE alert_id = %(alert_id)s

-- name: set_escalation_due
UPDATE alerts SET escalation_due_at = %(due_at)s WHERE alert_id = %(alert_id)s

-- name: active_steps
-- The alert's planned steps that are not withdrawn; fired ones have ``fired_at``.
SELECT step_no, level, due_at, targets, planned_at, fired_at IS NOT NULL AS fired
FROM escalation_steps
WHERE alert_id = %(alert_id)s AND withdrawn_at IS NULL
ORDER BY step_no

-- name: request_notification
-- Tell the current level again (sent by the next escalation tick).
INSERT INTO notify_requests (alert_id, requested_at, targets, reason)
VALUES (%(alert_id)s, %(at)s, %(targets)s, %(reason)s)

-- name: notify_team
-- The team's live stream: one NOTIFY per change, delivered at COMMIT (no identifiers).
SELECT pg_notify('homeward_team_' || team_id,
                 json_build_object('alert_id', alert_id, 'event', %(event)s::text)::text)
FROM alerts WHERE alert_id = %(alert_id)s AND team_id IS NOT NULL
