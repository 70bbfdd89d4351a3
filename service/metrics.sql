-- name: alerts_unresolved
-- Unresolved alerts by priority and state, across every worker.
SELECT priority, state, count(*) AS n FROM alerts WHERE state <> 'resolved' GROUP BY 1, 2

-- name: alerts_raised
-- Every alert ever raised, by priority (a counter kept by the table itself).
SELECT priority, count(*) AS n FROM alerts GROUP BY 1

-- name: notifications
-- Notifications by channel: delivered, waiting for their first attempt, failing (tried
-- and not yet delivered).
SELECT channel,
       count(*) FILTER (WHERE delivered_at IS NOT NULL) AS delivered,
       count(*) FILTER (WHERE delivered_at IS NULL AND attempts = 0) AS pending,
       count(*) FILTER (WHERE delivered_at IS NULL AND attempts > 0) AS failing
FROM notifications GROUP BY 1

-- name: escalation_steps
-- Steps fired, and steps due but not fired (overdue: the escalation timer is behind) —
-- of unresolved alerts escalation owes a look now; not a step withdrawn by a re-plan, nor
-- one that waits for an acknowledgement or snooze.
SELECT count(*) FILTER (WHERE s.fired_at IS NOT NULL) AS fired,
       count(*) FILTER (WHERE s.fired_at IS NULL AND s.withdrawn_at IS NULL
                          AND s.due_at < %(now)s AND a.state <> 'resolved'
                          AND a.escalation_due_at < %(now)s) AS overdue
FROM escalation_steps s JOIN alerts a USING (alert_id)

-- name: quarantine_by_reason
-- Messages quarantined by reason, each time it was seen.
SELECT reason, sum(times_seen) AS n FROM quarantine GROUP BY 1
