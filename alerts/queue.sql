-- name: list_alerts
SELECT a.alert_id, a.state, a.priority, a.team_id, p.nhs_number, p.display_name, a.rule_id,
       a.message, a.hit_count, a.latest_value, a.worst_value, a.condition_cleared,
       a.opened_at, a.latest_measured_at
FROM alerts a JOIN patients p USING (patient_id)
WHERE (%(team)s::text IS NULL OR a.team_id = %(team)s)
  AND (%(state)s::text IS NULL OR a.state = %(state)s)
-- The queue's order, as the API's team queue (api/queries.sql: team_queue): red, amber,
-- then technical; oldest first.
ORDER BY CASE a.priority WHEN 'red' THEN 0 WHEN 'amber' THEN 1 ELSE 2 END, a.opened_at,
         a.alert_id
LIMIT %(limit)s

-- name: alert_history
SELECT event_id, at, kind, actor, data FROM alert_events
WHERE alert_id = %(alert_id)s ORDER BY event_id
