-- Progress reports and revocation (docs/control.md): columns of the message row, so they go
-- with it. `revoked`: 0 none, 1 revoked while running (must not run again), 2 also to be
-- stopped. `progress`: the latest progress of the run whose lease token is `progress_token`
-- (read only while that lease is held), stored at `progress_at`.
ALTER TABLE conveyor_messages ADD COLUMN revoked smallint NOT NULL DEFAULT 0;
ALTER TABLE conveyor_messages ADD COLUMN progress bytea;
ALTER TABLE conveyor_messages ADD COLUMN progress_token text;
ALTER TABLE conveyor_messages ADD COLUMN progress_at double precision;
