-- Payments for orders, and the simulated provider's ledger (`provider_*`): in production those rows live at
-- the payment provider; here they make "charged twice" something a test can count.

CREATE TABLE payments (
    id uuid PRIMARY KEY,
    order_id uuid NOT NULL,
    -- The caller's Idempotency-Key and a hash of the request body: a retry resumes this payment, a different
    -- body under the same key is refused.
    idempotency_key text NOT NULL UNIQUE,
    request_fingerprint text NOT NULL,
    amount_cents bigint NOT NULL CHECK (amount_cents > 0),
    currency text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'captured', 'declined', 'refunded')),
    provider_charge_id text,
    decline_code text,
    provider_refund_id text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CHECK (status NOT IN ('captured', 'refunded') OR provider_charge_id IS NOT NULL),
    CHECK ((status = 'declined') = (decline_code IS NOT NULL)),
    CHECK ((status = 'refunded') = (provider_refund_id IS NOT NULL))
);

-- At most one payment per order that may take money (pending, captured or refunded); a declined one does not
-- count, so the order can be paid again under a new key.
CREATE UNIQUE INDEX payments_one_live_per_order ON payments (order_id) WHERE status <> 'declined';
CREATE INDEX payments_order_id ON payments (order_id, created_at);

-- The simulated provider's ledger. Like a real provider it is idempotent on the caller's key: a replay returns
-- the first result, a different request under the same key is refused.
CREATE TABLE provider_charges (
    id text PRIMARY KEY,
    idempotency_key text NOT NULL UNIQUE,
    request_fingerprint text NOT NULL,
    reference text NOT NULL,
    amount_cents bigint NOT NULL CHECK (amount_cents > 0),
    currency text NOT NULL,
    status text NOT NULL CHECK (status IN ('captured', 'declined')),
    decline_code text,
    created_at timestamptz NOT NULL DEFAULT now(),
    CHECK ((status = 'declined') = (decline_code IS NOT NULL))
);

CREATE INDEX provider_charges_reference ON provider_charges (reference);

-- Full refunds only: one refund per charge.
CREATE TABLE provider_refunds (
    id text PRIMARY KEY,
    idempotency_key text NOT NULL UNIQUE,
    charge_id text NOT NULL UNIQUE REFERENCES provider_charges (id),
    amount_cents bigint NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
