-- name: period_alerts
-- The alerts raised in the period (alerts/outcomes.py AlertRow), each with its first
-- acknowledgement, whether a person handled it, its escalation steps and the patient's
-- first admission on or after the alert's local day.
SELECT a.alert_id, a.patient_id, a.team_id, t.locality, a.priority, a.opened_at,
       -- the first acknowledgement: its event's time, or the acknowledgement in force if
       -- that is earlier (it holds the person's own time, the event the time recorded)
       LEAST(a.acknowledged_at,
             (SELECT min(e.at) FROM alert_events e
               WHERE e.alert_id = a.alert_id AND e.kind = 'acknowledged')) AS first_ack_at,
       a.resolved_at, a.outcome,
       EXISTS (SELECT 1 FROM alert_events e
                WHERE e.alert_id = a.alert_id
                  AND e.kind IN ('acknowledged', 'resolved', 'snoozed', 'unsnoozed',
                                 'reassigned', 'note_added')) AS handled_by_person,
       s.planned AS steps_planned, s.fired AS steps_fired, s.last_fired_at,
       (SELECT min(ad.admitted_on) FROM admissions ad
         WHERE ad.patient_id = a.patient_id
           AND ad.admitted_on >= (a.opened_at AT TIME ZONE %(tz)s)::date) AS first_admission_on
FROM alerts a
LEFT JOIN teams t ON t.team_id = a.team_id
CROSS JOIN LATERAL (
    SELECT count(*)::integer AS planned, count(fired_at)::integer AS fired,
           max(fired_at) AS last_fired_at
    FROM escalation_steps st WHERE st.alert_id = a.alert_id
) s
WHERE a.opened_at >= %(start)s AND a.opened_at < %(end)s
ORDER BY a.alert_id

-- name: period_patients
-- Patients enrolled before the period ended, their team now, and what their rules are.
SELECT p.patient_id, p.team_id, t.locality, p.created_at AS enrolled_at, p.conditions,
       COALESCE(r.overrides, '{}'::jsonb) AS overrides
FROM patients p
LEFT JOIN teams t ON t.team_id = p.team_id
LEFT JOIN patient_rules r ON r.patient_id = p.patient_id
WHERE p.created_at < %(end)s
ORDER BY p.patient_id

-- name: reading_days
-- The local days (in one zone) on which each patient measured each metric in the period.
SELECT DISTINCT patient_id, metric, (time AT TIME ZONE %(tz)s)::date AS day
FROM readings
WHERE time >= %(start)s AND time < %(end)s
  AND patient_id = ANY(%(patients)s::integer[]) AND metric = ANY(%(metrics)s::text[])
