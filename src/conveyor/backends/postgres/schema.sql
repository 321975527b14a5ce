-- The conveyor schema from scratch: what applying migrations/0001_*.sql ... in order gives
-- (tests/integration/test_postgres_schema.py compares the two in the catalogs).
--
-- Run by conveyor with `search_path` set to the target schema, inside a transaction that holds
-- an advisory lock; names are unqualified on purpose (the functions capture the schema with
-- SET search_path FROM CURRENT). Times are seconds since the epoch as double precision, always
-- the caller's clock (`now` is passed in), never the server's now().
--
-- One table holds every message, in one of four states: 0 ready (claimable once
-- ready_at <= now; this includes a lease that ran out, whose token stays until the next claim
-- so that a slow holder may still settle it), 1 leased, 2 scheduled (ready_at was in the
-- future), 3 dead (a dead letter; its FAILURE result is in conveyor_results). Each state but
-- "ready" has a small partial index of its own, and the claim index holds ready rows only, in
-- claim order (queue, priority DESC, seq): a claim walks it from the top and stops after
-- `limit` rows, however many messages are scheduled, running or dead. Scheduled messages and
-- expired leases are moved to "ready" by the claim itself (two index probes that usually find
-- nothing), so there is no mover process and no reaper.
--
-- The hot paths that take several statements are plpgsql functions, so that each is one
-- round trip and one transaction: a psycopg pipeline of the same statements measured slower
-- than separate round trips on a local server, and a multi-statement string cannot be a
-- prepared statement.

CREATE SEQUENCE conveyor_message_seq;

CREATE TABLE conveyor_messages (
    id              text PRIMARY KEY,
    seq             bigint NOT NULL DEFAULT nextval('conveyor_message_seq'),  -- FIFO order
    queue           text NOT NULL,
    priority        integer NOT NULL DEFAULT 0,
    state           smallint NOT NULL DEFAULT 0 CHECK (state BETWEEN 0 AND 3),
    ready_at        double precision NOT NULL,
    body            bytea NOT NULL,
    delivery_count  integer NOT NULL DEFAULT 0,
    token           text,
    lease_until     double precision,
    worker          text,
    reason          text,
    died_at         double precision,
    dedup_key       text,
    dedup_retention double precision NOT NULL DEFAULT 0,
    enqueued_at     double precision NOT NULL,
    -- 0002_control: revocation marks (0 none, 1 revoked while running, 2 to be stopped) and
    -- the latest progress of the run whose lease token is progress_token
    revoked         smallint NOT NULL DEFAULT 0,
    progress        bytea,
    progress_token  text,
    progress_at     double precision
);
ALTER SEQUENCE conveyor_message_seq OWNED BY conveyor_messages.seq;
CREATE INDEX conveyor_messages_claim ON conveyor_messages (queue, priority DESC, seq)
    WHERE state = 0;
CREATE INDEX conveyor_messages_scheduled ON conveyor_messages (ready_at) WHERE state = 2;
CREATE INDEX conveyor_messages_leased ON conveyor_messages (lease_until) WHERE state = 1;
CREATE INDEX conveyor_messages_dead ON conveyor_messages (died_at, seq) WHERE state = 3;

CREATE TABLE conveyor_results (
    id         text PRIMARY KEY,
    state      text NOT NULL,
    data       bytea,
    updated_at double precision NOT NULL,
    expires_at double precision NOT NULL
);
CREATE INDEX conveyor_results_expiry ON conveyor_results (expires_at);

-- expires_at is NULL while the message holding the key exists.
CREATE TABLE conveyor_dedup (
    key        text PRIMARY KEY,
    message_id text NOT NULL,
    expires_at double precision
);
CREATE INDEX conveyor_dedup_expiry ON conveyor_dedup (expires_at) WHERE expires_at IS NOT NULL;

CREATE TABLE conveyor_locks (
    key        text PRIMARY KEY,
    owner      text NOT NULL,
    expires_at double precision NOT NULL
);

CREATE TABLE conveyor_counters (
    key        text PRIMARY KEY,
    value      bigint NOT NULL,
    expires_at double precision NOT NULL
);

CREATE TABLE conveyor_workers (
    id         text PRIMARY KEY,
    info       jsonb NOT NULL,
    last_seen  double precision NOT NULL,
    expires_at double precision NOT NULL
);

-- Enqueue messages that may carry dedup keys, in order, each atomically: a live key returns its
-- holder and writes nothing; an id that exists (queued or dead) returns that id and writes
-- nothing. Returns the holder of each message. Runs in the caller's transaction.
CREATE FUNCTION conveyor_enqueue(
    p_ids text[], p_queues text[], p_priorities integer[], p_ready double precision[],
    p_bodies bytea[], p_keys text[], p_retentions double precision[], p_now double precision,
    p_channel text)
RETURNS text[] LANGUAGE plpgsql SET search_path FROM CURRENT
SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_out text[] := '{}';
    v_fresh boolean;
    v_holder text;
    v_until double precision;
BEGIN
    FOR i IN 1 .. coalesce(array_length(p_ids, 1), 0) LOOP
        v_fresh := false;
        IF p_keys[i] IS NOT NULL THEN
            LOOP  -- take the key, or lock its row (which a concurrent taker then waits for)
                INSERT INTO conveyor_dedup (key, message_id) VALUES (p_keys[i], p_ids[i])
                    ON CONFLICT (key) DO NOTHING;
                IF FOUND THEN
                    v_fresh := true;
                    EXIT;
                END IF;
                SELECT message_id, expires_at INTO v_holder, v_until FROM conveyor_dedup
                    WHERE key = p_keys[i] FOR UPDATE;
                EXIT WHEN FOUND;  -- else it expired and was deleted meanwhile: try again
            END LOOP;
            IF NOT v_fresh AND (v_until IS NULL OR v_until > p_now) THEN
                v_out := v_out || v_holder;
                CONTINUE;
            END IF;
        END IF;
        INSERT INTO conveyor_messages (id, queue, priority, state, ready_at, body, dedup_key,
                                       dedup_retention, enqueued_at)
        VALUES (p_ids[i], p_queues[i], p_priorities[i],
                CASE WHEN p_ready[i] > p_now THEN 2 ELSE 0 END, p_ready[i], p_bodies[i],
                p_keys[i], coalesce(p_retentions[i], 0), p_now)
        ON CONFLICT (id) DO NOTHING;
        IF NOT FOUND THEN  -- that id is queued or dead already: it does not take the key
            IF v_fresh THEN
                DELETE FROM conveyor_dedup WHERE key = p_keys[i];
            END IF;
            v_out := v_out || p_ids[i];
            CONTINUE;
        END IF;
        IF p_keys[i] IS NOT NULL AND NOT v_fresh THEN  -- an expired key passes to this message
            UPDATE conveyor_dedup SET message_id = p_ids[i], expires_at = NULL
                WHERE key = p_keys[i];
        END IF;
        DELETE FROM conveyor_results WHERE id = p_ids[i];  -- an earlier run's result
        PERFORM pg_notify(p_channel, p_queues[i]);
        v_out := v_out || p_ids[i];
    END LOOP;
    RETURN v_out;
END
$$;

-- The worker's hot path, one call and one transaction: apply the settlements in order (each
-- fenced by its token), then claim up to p_limit ready messages. The first row carries the
-- settle outcomes (r_settled); each further row is one claimed message.
-- s_kinds: 'ack' (s_texts state, s_datas result, s_nums ttl), 'release' (s_nums ready_at,
-- s_datas new body or NULL, s_flags attempted), 'bury' (s_texts reason, s_datas result,
-- s_nums ttl). p_queues NULL: every queue.
CREATE FUNCTION conveyor_settle_and_claim(
    s_kinds text[], s_ids text[], s_tokens text[], s_texts text[], s_datas bytea[],
    s_nums double precision[], s_flags boolean[],
    p_queues text[], p_worker text, p_now double precision, p_lease double precision,
    p_limit integer, p_token text, p_work_channel text, p_done_channel text)
RETURNS TABLE (r_settled boolean[], r_seq bigint, r_id text, r_queue text, r_body bytea,
               r_priority integer, r_delivery_count integer, r_token text)
LANGUAGE plpgsql SET search_path FROM CURRENT
-- Every statement here must walk an index in order and stop early (a plan made while the
-- table was small, or not analyzed yet, would otherwise collect and sort a whole queue), and
-- planning them again on every call would cost more than running them.
SET enable_bitmapscan = off SET enable_seqscan = off SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    v_done boolean[] := '{}';
    v_finished text[] := '{}';
    v_key text;
    v_retention double precision;
    v_queue text;
    v_payload text;
BEGIN
    FOR i IN 1 .. coalesce(array_length(s_ids, 1), 0) LOOP
        v_key := NULL;
        IF s_kinds[i] = 'ack' THEN
            DELETE FROM conveyor_messages WHERE id = s_ids[i] AND token = s_tokens[i]
                RETURNING dedup_key, dedup_retention INTO v_key, v_retention;
            IF NOT FOUND THEN
                v_done := v_done || false;
                CONTINUE;
            END IF;
            IF s_datas[i] IS NULL THEN  -- an earlier run's result is not this run's
                DELETE FROM conveyor_results WHERE id = s_ids[i];
            ELSE
                INSERT INTO conveyor_results (id, state, data, updated_at, expires_at)
                VALUES (s_ids[i], s_texts[i], s_datas[i], p_now, p_now + s_nums[i])
                ON CONFLICT (id) DO UPDATE SET state = excluded.state, data = excluded.data,
                    updated_at = excluded.updated_at, expires_at = excluded.expires_at;
            END IF;
            v_finished := v_finished || s_ids[i];
        ELSIF s_kinds[i] = 'release' THEN
            UPDATE conveyor_messages SET token = NULL, lease_until = NULL, worker = NULL,
                ready_at = s_nums[i], state = CASE WHEN s_nums[i] > p_now THEN 2 ELSE 0 END,
                body = coalesce(s_datas[i], body),
                delivery_count = CASE WHEN s_flags[i] THEN delivery_count
                                      ELSE greatest(delivery_count - 1, 0) END,
                seq = CASE WHEN s_flags[i] THEN nextval('conveyor_message_seq') ELSE seq END
            WHERE id = s_ids[i] AND token = s_tokens[i]
            RETURNING queue INTO v_queue;
            IF NOT FOUND THEN
                v_done := v_done || false;
                CONTINUE;
            END IF;
            PERFORM pg_notify(p_work_channel, v_queue);
        ELSE
            UPDATE conveyor_messages SET state = 3, token = NULL, lease_until = NULL,
                worker = NULL, reason = s_texts[i], died_at = p_now
            WHERE id = s_ids[i] AND token = s_tokens[i]
            RETURNING dedup_key, dedup_retention INTO v_key, v_retention;
            IF NOT FOUND THEN
                v_done := v_done || false;
                CONTINUE;
            END IF;
            INSERT INTO conveyor_results (id, state, data, updated_at, expires_at)
            VALUES (s_ids[i], 'FAILURE', s_datas[i], p_now, p_now + s_nums[i])
            ON CONFLICT (id) DO UPDATE SET state = excluded.state, data = excluded.data,
                updated_at = excluded.updated_at, expires_at = excluded.expires_at;
            v_finished := v_finished || s_ids[i];
        END IF;
        IF v_key IS NOT NULL THEN  -- a settled message frees its key or keeps it a while
            IF v_retention > 0 THEN
                UPDATE conveyor_dedup SET expires_at = p_now + v_retention
                    WHERE key = v_key AND message_id = s_ids[i];
            ELSE
                DELETE FROM conveyor_dedup WHERE key = v_key AND message_id = s_ids[i];
            END IF;
        END IF;
        v_done := v_done || true;
    END LOOP;
    IF cardinality(v_finished) > 0 THEN  -- wake waiting get()s
        v_payload := array_to_string(v_finished, E'\n');
        IF octet_length(v_payload) > 7000 THEN
            v_payload := '*';
        END IF;
        PERFORM pg_notify(p_done_channel, v_payload);
    END IF;
    IF cardinality(v_done) = 0 THEN
        -- A claim alone need not wait for its WAL flush: lost in a server crash, it only
        -- puts the message back as it was (its worker's settle is then refused and it runs
        -- again, as after any lost lease). Settles always wait: a result is never lost.
        PERFORM set_config('synchronous_commit', 'off', true);
    END IF;
    RETURN QUERY SELECT v_done, NULL::bigint, NULL::text, NULL::text, NULL::bytea,
                        NULL::integer, NULL::integer, NULL::text;
    IF p_limit <= 0 OR cardinality(p_queues) = 0 THEN
        RETURN;
    END IF;
    -- Due scheduled messages and expired leases join the ready ones (skipping rows another
    -- claimer is moving right now).
    UPDATE conveyor_messages SET state = 0 WHERE id IN (
        SELECT id FROM conveyor_messages WHERE state = 2 AND ready_at <= p_now
        ORDER BY ready_at LIMIT 1000 FOR UPDATE SKIP LOCKED);
    UPDATE conveyor_messages SET state = 0 WHERE id IN (
        SELECT id FROM conveyor_messages WHERE state = 1 AND lease_until <= p_now
        ORDER BY lease_until LIMIT 1000 FOR UPDATE SKIP LOCKED);
    IF p_queues IS NULL THEN  -- the queues that have ready messages (a loose index scan)
        p_queues := ARRAY(
            WITH RECURSIVE q(name) AS (
                (SELECT queue FROM conveyor_messages WHERE state = 0 ORDER BY queue LIMIT 1)
                UNION ALL
                SELECT (SELECT queue FROM conveyor_messages
                        WHERE state = 0 AND queue > q.name ORDER BY queue LIMIT 1)
                FROM q WHERE q.name IS NOT NULL)
            SELECT name FROM q WHERE name IS NOT NULL);
    END IF;
    RETURN QUERY
    WITH picked AS (
        SELECT c.id FROM unnest(p_queues) AS qs(name) CROSS JOIN LATERAL (
            SELECT m.id, m.priority, m.seq FROM conveyor_messages m
            WHERE m.state = 0 AND m.queue = qs.name AND m.ready_at <= p_now
            ORDER BY m.priority DESC, m.seq LIMIT p_limit
            FOR UPDATE SKIP LOCKED) c
        ORDER BY c.priority DESC, c.seq LIMIT p_limit),
    claimed AS (
        UPDATE conveyor_messages m SET state = 1, token = p_token || m.seq,
            lease_until = p_now + p_lease, delivery_count = m.delivery_count + 1,
            worker = p_worker
        FROM picked WHERE m.id = picked.id
        RETURNING m.seq, m.id, m.queue, m.body, m.priority, m.delivery_count, m.token)
    SELECT NULL::boolean[], c.seq, c.id, c.queue, c.body, c.priority, c.delivery_count,
           c.token
    FROM claimed c;
END
$$;
