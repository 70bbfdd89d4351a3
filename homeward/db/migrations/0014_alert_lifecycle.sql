-- The alert lifecycle stored whole, so every stored path runs the one pure decision
-- (alerts/lifecycle.py) on the alert as it is: holds, the current level, who snoozed.
-- depends: 0010_fhir_observations 0011_audit_limits_late_reviews 0011_patient_team 0011_quarantine_bounded 0013_admissions

ALTER TABLE alerts
    ADD COLUMN direction        text,                        -- which way is worse
    ADD COLUMN snoozed_by       text,
    ADD COLUMN snooze_reason    text,
    ADD COLUMN holds            jsonb NOT NULL DEFAULT '[]', -- [{reason, start, end}]
    ADD COLUMN last_step_no     integer NOT NULL DEFAULT 0,  -- escalation steps sent
    ADD COLUMN escalation_level integer NOT NULL DEFAULT 0,
    ADD COLUMN notified         jsonb NOT NULL DEFAULT '[]', -- the current level's targets
    -- Escalation is to be planned again from this time (set when the priority rises).
    ADD COLUMN plan_from        timestamptz,
    -- When escalation must look at the alert again (a step due, the acknowledgement's
    -- expiry, the snooze's end), from the pure decision ``next_check_at``.
    ADD COLUMN escalation_due_at timestamptz;
CREATE INDEX alerts_escalation_due ON alerts (escalation_due_at) WHERE state <> 'resolved';
CREATE INDEX alerts_plan_pending ON alerts (alert_id)
    WHERE state <> 'resolved' AND (policy IS NULL OR plan_from IS NOT NULL);

-- A step withdrawn by a re-plan never fires; it stays for the record. ``planned_at``: a
-- hold (acknowledged, snoozed) delays a step only if it began after the step was planned.
ALTER TABLE escalation_steps
    ADD COLUMN withdrawn_at timestamptz,
    ADD COLUMN planned_at   timestamptz;
DROP INDEX escalation_steps_due;
CREATE INDEX escalation_steps_due ON escalation_steps (due_at)
    WHERE fired_at IS NULL AND withdrawn_at IS NULL;

-- Tell the current level again (priority raised, a new breach after "condition cleared",
-- an acknowledgement expired): requested by the decision, sent by the next escalation tick.
CREATE TABLE notify_requests (
    request_id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alert_id      bigint NOT NULL REFERENCES alerts (alert_id),
    requested_at  timestamptz NOT NULL,
    targets       jsonb NOT NULL,
    reason        text NOT NULL,
    sent_at       timestamptz
);
CREATE INDEX notify_requests_pending ON notify_requests (alert_id) WHERE sent_at IS NULL;

-- Alerts stored before this migration: the current level from the steps fired, the
-- running acknowledgement as a hold, and escalation to look at each of them once.
UPDATE alerts a SET last_step_no = s.step_no, escalation_level = s.level, notified = s.targets
FROM (SELECT DISTINCT ON (alert_id) alert_id, step_no, level, targets
      FROM escalation_steps WHERE fired_at IS NOT NULL
      ORDER BY alert_id, step_no DESC) s
WHERE a.alert_id = s.alert_id;
UPDATE alerts SET holds = jsonb_build_array(jsonb_build_object(
    'reason', 'acknowledged', 'start', acknowledged_at, 'end', ack_expires_at))
WHERE state = 'acknowledged' AND acknowledged_at IS NOT NULL;
UPDATE alerts SET escalation_due_at = now() WHERE state <> 'resolved';
