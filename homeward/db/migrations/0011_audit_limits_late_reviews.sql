-- The audit log's count of what it did not keep, and late readings closed by a person.
-- depends: 0010_rule_state

-- Unauthenticated refusals past their client's limit (api/ratelimit.py): one row per
-- client address and window, its count raised in place — the storage an attacker can
-- fill grows with addresses and time, not with requests, and nothing is silent.
CREATE TABLE audit_dropped (
    client       text NOT NULL,         -- the client address (or '*': too many addresses)
    window_start timestamptz NOT NULL,
    dropped      bigint NOT NULL CHECK (dropped > 0),
    first_at     timestamptz NOT NULL,
    last_at      timestamptz NOT NULL,
    PRIMARY KEY (client, window_start)
);

-- A late reading that would have breached a rule is closed by a person, with a note;
-- once closed it stays closed, and no review is ever deleted.
ALTER TABLE late_reviews ADD COLUMN review_note text;
CREATE INDEX late_reviews_open ON late_reviews (patient_id, measured_at)
    WHERE reviewed_at IS NULL;

CREATE FUNCTION late_reviews_close_once() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'late_reviews rows are never deleted';
    END IF;
    IF OLD.reviewed_at IS NOT NULL THEN
        RAISE EXCEPTION 'late review % is already closed', OLD.review_id;
    END IF;
    IF (NEW.review_id, NEW.patient_id, NEW.rule_id, NEW.measured_at, NEW.received_at,
        NEW.value, NEW.message, NEW.created_at)
       IS DISTINCT FROM
       (OLD.review_id, OLD.patient_id, OLD.rule_id, OLD.measured_at, OLD.received_at,
        OLD.value, OLD.message, OLD.created_at) THEN
        RAISE EXCEPTION 'a late review changes only by being closed';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER late_reviews_closed_once BEFORE UPDATE OR DELETE ON late_reviews
    FOR EACH ROW EXECUTE FUNCTION late_reviews_close_once();
