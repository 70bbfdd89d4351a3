-- name: principal
-- The person a token speaks for, when the token is known, unexpired and not revoked.
SELECT t.token_id,
       CASE WHEN t.staff_id IS NOT NULL THEN 'staff' ELSE 'patient' END AS kind,
       COALESCE(t.staff_id, p.nhs_number) AS subject,
       COALESCE(s.name, p.display_name) AS name,
       COALESCE(s.team_id, p.team_id) AS team_id,
       COALESCE(s.roles, '{}') AS roles,
       t.patient_id
FROM api_tokens t
LEFT JOIN staff s ON s.staff_id = t.staff_id
LEFT JOIN patients p ON p.patient_id = t.patient_id
WHERE t.token_sha256 = %(digest)s AND t.revoked_at IS NULL AND t.expires_at > %(now)s

-- name: patient_ref
-- A patient by NHS number, with the teams that hold an unresolved alert of theirs: the
-- alert's team and that team's out-of-hours cover (the locality's rapid response).
SELECT p.patient_id, p.nhs_number, p.display_name, p.team_id,
       ARRAY(SELECT DISTINCT t FROM alerts a
             LEFT JOIN teams tm ON tm.team_id = a.team_id
             CROSS JOIN LATERAL unnest(ARRAY[a.team_id, tm.out_of_hours]) AS t
             WHERE a.patient_id = p.patient_id AND a.state <> 'resolved'
               AND t IS NOT NULL) AS alert_teams
FROM patients p WHERE p.nhs_number = %(nhs_number)s

-- name: alert_ref
-- An alert with its team, that team's out-of-hours cover, and its patient's team.
SELECT a.alert_id, a.team_id AS alert_team,
       ARRAY_REMOVE(ARRAY[a.team_id, tm.out_of_hours], NULL) AS alert_teams,
       p.patient_id, p.team_id, p.nhs_number
FROM alerts a JOIN patients p USING (patient_id)
LEFT JOIN teams tm ON tm.team_id = a.team_id
WHERE a.alert_id = %(alert_id)s

-- name: audit
INSERT INTO audit_log (actor, role, action, patient_id, team_id, allowed, status, detail)
VALUES (%(actor)s, %(role)s, %(action)s, %(patient_id)s, %(team_id)s, %(allowed)s,
        %(status)s, %(detail)s)

-- name: team_queue
-- The team's unresolved alerts, and those of the teams it covers out of hours: red
-- first, then amber, then technical; oldest first. The page is built as JSON by
-- PostgreSQL (the API passes it through), with each alert's team and age. The API puts
-- the team condition in place of {teams}: equality for a team that covers none (read
-- in order from the index alerts_team_queue), a team list for one that covers others.
SELECT COALESCE(json_agg(q ORDER BY CASE q.priority WHEN 'red' THEN 0 WHEN 'amber' THEN 1
                                                     ELSE 2 END, q.opened_at, q.alert_id),
                '[]')::text AS alerts,
       COALESCE(array_agg(DISTINCT q.patient_id), ARRAY[]::integer[]) AS patients
FROM (
    SELECT a.alert_id, a.team_id, a.state, a.priority, a.kind, a.rule_id, a.metric, a.message,
           a.hit_count, a.latest_value, a.worst_value, a.condition_cleared, a.opened_at,
           a.first_measured_at, a.latest_measured_at,
           round(extract(epoch FROM %(now)s - a.latest_measured_at)) AS age_s,
           a.acknowledged_by, a.acknowledged_at, a.snoozed_until, a.assignee,
           p.patient_id, p.nhs_number, p.display_name
    FROM alerts a JOIN patients p USING (patient_id)
    WHERE {teams} AND a.state <> 'resolved'
      AND (%(state)s::text IS NULL OR a.state = %(state)s)
    ORDER BY CASE a.priority WHEN 'red' THEN 0 WHEN 'amber' THEN 1 ELSE 2 END, a.opened_at,
             a.alert_id
    LIMIT %(limit)s
) q

-- name: covered_teams
-- The teams that name this one as their out-of-hours cover.
SELECT team_id FROM teams WHERE out_of_hours = %(team_id)s

-- name: patient_alerts
SELECT a.alert_id, a.state, a.priority, a.kind, a.rule_id, a.metric, a.message,
       a.hit_count, a.latest_value, a.worst_value, a.condition_cleared, a.opened_at,
       a.first_measured_at, a.latest_measured_at, a.acknowledged_at, a.resolved_at,
       a.outcome, a.team_id
FROM alerts a
WHERE a.patient_id = %(patient_id)s AND (%(state)s::text IS NULL OR a.state = %(state)s)
ORDER BY a.opened_at DESC, a.alert_id DESC
LIMIT %(limit)s

-- name: readings_raw
SELECT time, metric, value, received_at, device_id, flags, late
FROM readings
WHERE patient_id = %(patient_id)s AND time >= %(since)s AND time < %(until)s
  AND (%(metrics)s::text[] IS NULL OR metric = ANY(%(metrics)s))
ORDER BY time, metric
LIMIT %(limit)s

-- name: readings_rollup
-- {rollup} is readings_hourly or readings_daily (the API composes it as an identifier).
SELECT bucket AS time, metric, n, mean, min, max
FROM {rollup}
WHERE patient_id = %(patient_id)s AND bucket >= %(since)s AND bucket < %(until)s
  AND (%(metrics)s::text[] IS NULL OR metric = ANY(%(metrics)s))
ORDER BY bucket, metric
LIMIT %(limit)s

-- name: issue_token
INSERT INTO api_tokens (token_sha256, staff_id, patient_id, label, issued_at, expires_at)
VALUES (%(digest)s, %(staff_id)s, %(patient_id)s, %(label)s, %(now)s, %(expires_at)s)
RETURNING token_id

-- name: revoke_token
UPDATE api_tokens SET revoked_at = %(now)s
WHERE token_id = %(token_id)s AND revoked_at IS NULL
RETURNING token_id

-- name: list_tokens
SELECT t.token_id, COALESCE('staff:' || t.staff_id, 'patient:' || p.nhs_number) AS subject,
       t.label, t.issued_at, t.expires_at, t.revoked_at
FROM api_tokens t LEFT JOIN patients p ON p.patient_id = t.patient_id
ORDER BY t.token_id

-- name: list_audit
SELECT l.audit_id, l.at, l.actor, l.role, l.action, p.nhs_number, l.team_id, l.allowed,
       l.status, l.detail
FROM audit_log l LEFT JOIN patients p ON p.patient_id = l.patient_id
WHERE (%(nhs_number)s::text IS NULL OR p.nhs_number = %(nhs_number)s
       -- a read of several patients (a queue, a list) names each in detail.patients
       OR l.detail->'patients' @> (SELECT to_jsonb(ARRAY[q.patient_id]) FROM patients q
                                   WHERE q.nhs_number = %(nhs_number)s))
  AND (%(actor)s::text IS NULL OR l.actor = %(actor)s)
ORDER BY l.audit_id DESC
LIMIT %(limit)s

-- name: count_dropped
-- An unauthenticated refusal past its client's limit (api/ratelimit.py): counted, not kept.
INSERT INTO audit_dropped (client, window_start, dropped, first_at, last_at)
VALUES (%(client)s, %(window_start)s, 1, %(now)s, %(now)s)
ON CONFLICT (client, window_start)
DO UPDATE SET dropped = audit_dropped.dropped + 1, last_at = EXCLUDED.last_at

-- name: list_dropped
SELECT client, window_start, dropped, first_at, last_at
FROM audit_dropped
ORDER BY window_start DESC, client
LIMIT %(limit)s

-- name: review_ref
-- A late review with its patient's team (the path of a request that names one).
SELECT r.review_id, r.patient_id, p.team_id, p.nhs_number
FROM late_reviews r JOIN patients p USING (patient_id)
WHERE r.review_id = %(review_id)s
