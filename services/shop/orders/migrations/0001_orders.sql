-- Orders and the checkout saga's persisted state (schema `orders`; search_path is set, so no prefix).
-- Every step of the saga is a status change committed before the next remote call, so a process that dies
-- at any point leaves an order a recovery loop can resume: every remote call is idempotent on the order id.

CREATE TABLE orders (
    id uuid PRIMARY KEY,
    user_id text NOT NULL,
    -- Copied from the users service when the order is placed: notifications need a recipient.
    user_email text,
    status text NOT NULL,
    currency text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    -- [{product_id, quantity, unit_price_cents, line_total_cents}]: prices as products quoted them.
    items jsonb NOT NULL,
    total_cents bigint NOT NULL CHECK (total_cents >= 0),
    -- Why an order ended other than confirmed (insufficient_stock, payment_declined, reservation_expired...).
    reason text,
    payment_id text,
    reservation_expires_at timestamptz,
    -- Recovery: attempts at the current step, when the next may run, and the lease of whoever drives it.
    attempts integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    claim_token uuid,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT orders_status_known CHECK (status IN (
        'pending', 'reserved', 'payment_pending', 'paid', 'releasing', 'refunding',
        'confirmed', 'rejected', 'payment_failed', 'cancelled'
    ))
);

-- GET /orders: the caller's orders, newest first, keyset pagination on (created_at, id).
CREATE INDEX orders_by_user ON orders (user_id, created_at DESC, id DESC);

-- The recovery loop's claim: only unfinished orders, oldest due first.
CREATE INDEX orders_due ON orders (next_attempt_at)
    WHERE status IN ('pending', 'reserved', 'payment_pending', 'paid', 'releasing', 'refunding');

-- Every status change, for audits and the saga's tests.
CREATE TABLE order_transitions (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    order_id uuid NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    from_status text,
    to_status text NOT NULL,
    reason text,
    at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX order_transitions_by_order ON order_transitions (order_id, id);
