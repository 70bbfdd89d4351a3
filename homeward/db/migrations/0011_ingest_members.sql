-- Ingest workers of a share group, so that a stopped or crashed worker's share of the
-- readings is handed back or reclaimed (ingest/membership.py, docs/operations.md), and
-- service-level technical alerts, which concern the service rather than one patient.
-- depends: 0009_api_access

-- One row per worker client id. state:
--   active   running and a member of the shared subscription (heartbeat_at kept fresh);
--   stopped  stopped gracefully as the group's last member: still subscribed, so the
--            broker keeps the readings in its session for the next start;
--   left     no longer a member (unsubscribed on a graceful stop, or reclaimed by a
--            peer after a crash or a stop): its session receives nothing new.
-- An active row whose heartbeat is older than the peer timeout is a crashed worker.
CREATE TABLE ingest_members (
    client_id     text PRIMARY KEY,
    share_group   text NOT NULL,
    state         text NOT NULL CHECK (state IN ('active', 'stopped', 'left')),
    heartbeat_at  timestamptz NOT NULL DEFAULT now(),
    started_at    timestamptz NOT NULL DEFAULT now(),
    host          text,
    pid           integer,
    claimed_by    text,            -- a peer reclaiming its session (a lease, see claimed_at)
    claimed_at    timestamptz,
    left_at       timestamptz,
    reclaimed_by  text             -- who drained and unsubscribed it, when not itself
);
CREATE INDEX ingest_members_group ON ingest_members (share_group, client_id);

-- A technical alert about the service itself (a worker's share stranded beyond the
-- bound, readings the broker may have dropped): one open alert per kind and subject.
CREATE TABLE service_alerts (
    alert_id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind         text NOT NULL,
    subject      text NOT NULL,
    state        text NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'resolved')),
    raised_at    timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    resolved_at  timestamptz,
    hit_count    integer NOT NULL DEFAULT 1,
    message      text NOT NULL,
    details      jsonb NOT NULL DEFAULT '{}'
);
CREATE UNIQUE INDEX service_alerts_one_open ON service_alerts (kind, subject)
    WHERE state = 'open';
