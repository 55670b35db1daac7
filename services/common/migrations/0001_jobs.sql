-- Files uploaded to shared storage. The client's filename is metadata only; `storage_key` is server-chosen.
CREATE TABLE files (
    id            uuid PRIMARY KEY,
    client_id     text        NOT NULL,
    storage_key   text        NOT NULL UNIQUE,
    filename      text,
    content_type  text        NOT NULL,
    size_bytes    bigint      NOT NULL CHECK (size_bytes >= 0),
    sha256        text        NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE batches (
    id               uuid PRIMARY KEY,
    client_id        text        NOT NULL,
    idempotency_key  text,
    fingerprint      text        NOT NULL,
    job_count        integer     NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (client_id, idempotency_key)
);

CREATE TABLE jobs (
    id                uuid PRIMARY KEY,
    client_id         text        NOT NULL,
    idempotency_key   text,
    fingerprint       text        NOT NULL,
    type              text        NOT NULL,
    priority          text        NOT NULL CHECK (priority IN ('high', 'normal', 'low')),
    params            jsonb       NOT NULL,
    input_file_id     uuid        REFERENCES files (id),
    batch_id          uuid        REFERENCES batches (id),
    status            text        NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed')),
    -- Bumped by every transition: SSE streams and the Redis cache use it to order snapshots.
    version           integer     NOT NULL DEFAULT 1,
    attempts          integer     NOT NULL DEFAULT 0,
    lease_owner       text,
    lease_expires_at  timestamptz,
    result_key        text,
    result_summary    jsonb,
    error             text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    started_at        timestamptz,
    finished_at       timestamptz,
    UNIQUE (client_id, idempotency_key)
);
CREATE INDEX jobs_client_created ON jobs (client_id, created_at DESC, id DESC);
CREATE INDEX jobs_batch ON jobs (batch_id) WHERE batch_id IS NOT NULL;

-- Transactional outbox: written in the same transaction as the job, relayed to SQS, then deleted.
CREATE TABLE outbox (
    id         bigserial PRIMARY KEY,
    job_id     uuid        NOT NULL,
    priority   text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Audit trail of worker transitions; "completed exactly once" is checked against it.
CREATE TABLE job_transitions (
    id          bigserial PRIMARY KEY,
    job_id      uuid        NOT NULL REFERENCES jobs (id),
    from_status text        NOT NULL,
    to_status   text        NOT NULL,
    version     integer     NOT NULL,
    worker      text,
    detail      text,
    at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX job_transitions_job ON job_transitions (job_id, id);
