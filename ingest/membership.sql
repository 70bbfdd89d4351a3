-- name: join
-- A worker (re)starts: active, fresh heartbeat, any claim on it dropped (it drains its
-- own session now).
INSERT INTO ingest_members AS m (client_id, share_group, state, host, pid)
VALUES (%(client_id)s, %(group)s, 'active', %(host)s, %(pid)s)
ON CONFLICT (client_id) DO UPDATE SET
    share_group = EXCLUDED.share_group, state = 'active', heartbeat_at = now(),
    started_at = now(), host = EXCLUDED.host, pid = EXCLUDED.pid,
    claimed_by = NULL, claimed_at = NULL, left_at = NULL, reclaimed_by = NULL

-- name: heartbeat
UPDATE ingest_members SET heartbeat_at = now(), state = 'active'
WHERE client_id = %(client_id)s

-- name: lock_group
-- Leaving is decided under the group's row locks (always taken in client id order), so
-- two workers stopping at once never both unsubscribe.
SELECT client_id, state, heartbeat_at > now() - make_interval(secs => %(timeout_s)s) AS fresh
FROM ingest_members WHERE share_group = %(group)s
ORDER BY client_id FOR UPDATE

-- name: set_state
UPDATE ingest_members
   SET state = %(state)s, heartbeat_at = now(),
       left_at = CASE WHEN %(state)s = 'left' THEN now() END
WHERE client_id = %(client_id)s

-- name: claim
-- A peer to reclaim: stopped as the last member (its session holds the group's readings),
-- or active with a heartbeat older than the timeout (crashed). A claim is a lease: a
-- claimant that dies is replaced after the timeout.
UPDATE ingest_members m SET claimed_by = %(me)s, claimed_at = now()
FROM (
    SELECT client_id FROM ingest_members
    WHERE share_group = %(group)s AND client_id <> %(me)s
      AND (state = 'stopped'
           OR (state = 'active'
               AND heartbeat_at < now() - make_interval(secs => %(timeout_s)s)))
      AND (claimed_by IS NULL OR claimed_by = %(me)s
           OR claimed_at < now() - make_interval(secs => %(timeout_s)s))
    ORDER BY heartbeat_at
    LIMIT 1
    FOR UPDATE SKIP LOCKED
) due
WHERE m.client_id = due.client_id
RETURNING m.client_id, m.state, m.heartbeat_at

-- name: reclaimed
-- Drained and unsubscribed by a peer. A worker that came back meanwhile has dropped the
-- claim (join), and a live one's next heartbeat makes it active again.
UPDATE ingest_members
   SET state = 'left', left_at = now(), reclaimed_by = %(me)s, claimed_by = NULL,
       claimed_at = NULL
WHERE client_id = %(client_id)s AND claimed_by = %(me)s

-- name: release_claim
UPDATE ingest_members SET claimed_by = NULL, claimed_at = NULL
WHERE client_id = %(client_id)s AND claimed_by = %(me)s

-- name: stranded
-- Members whose session may hold readings nobody is draining, for longer than the bound:
-- crashed (stale heartbeat) or stopped, and not reclaimed yet.
SELECT client_id, state, heartbeat_at, extract(epoch FROM now() - heartbeat_at)::float8
FROM ingest_members
WHERE share_group = %(group)s AND client_id <> %(me)s
  AND state IN ('active', 'stopped')
  AND heartbeat_at < now() - make_interval(secs => %(bound_s)s)
ORDER BY client_id

-- name: raise_service_alert
INSERT INTO service_alerts AS a (kind, subject, message, details)
VALUES (%(kind)s, %(subject)s, %(message)s, %(details)s)
ON CONFLICT (kind, subject) WHERE state = 'open' DO UPDATE SET
    hit_count = a.hit_count + 1, updated_at = now(), message = EXCLUDED.message,
    details = EXCLUDED.details
RETURNING alert_id, (xmax = 0) AS created

-- name: resolve_service_alerts
-- Open alerts of a kind whose subject is no longer in the condition.
UPDATE service_alerts SET state = 'resolved', resolved_at = now(), updated_at = now()
WHERE kind = %(kind)s AND state = 'open' AND NOT (subject = ANY(%(subjects)s))
  AND starts_with(subject, %(scope)s)
RETURNING alert_id, subject
