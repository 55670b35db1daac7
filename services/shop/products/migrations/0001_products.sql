-- The catalog. `search` is maintained by PostgreSQL itself (plain tsvector: no extension, so nothing in AWS needs
-- a superuser); name weighs more than category, category more than description.
CREATE TABLE products (
    id           uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    sku          text        NOT NULL UNIQUE CHECK (sku <> ''),
    name         text        NOT NULL CHECK (name <> ''),
    description  text        NOT NULL DEFAULT '',
    category     text        NOT NULL,
    price_cents  integer     NOT NULL CHECK (price_cents >= 0),
    currency     char(3)     NOT NULL DEFAULT 'USD',
    created_at   timestamptz NOT NULL DEFAULT now(),
    search       tsvector    GENERATED ALWAYS AS (
        setweight(to_tsvector('english', name), 'A')
        || setweight(to_tsvector('english', category), 'B')
        || setweight(to_tsvector('english', description), 'C')
    ) STORED
);
-- Keyset pagination: the listing order (name, id), overall and per category.
CREATE INDEX products_by_name ON products (name, id);
CREATE INDEX products_by_category_name ON products (category, name, id);
CREATE INDEX products_search ON products USING gin (search);

-- Stock lives apart from the catalog: its rows are small and updated on every reservation (HOT updates), and a
-- reservation locks only them. `version` increases with every change; the cache refuses to store older versions.
CREATE TABLE stock (
    product_id  uuid    PRIMARY KEY REFERENCES products (id),
    available   integer NOT NULL CHECK (available >= 0),
    version     bigint  NOT NULL DEFAULT 1
) WITH (fillfactor = 70);

-- One reservation per order (the order id is the idempotency key). A `released` row without items is a tombstone:
-- the order was released before its reservation arrived, which must then never take stock.
CREATE TABLE reservations (
    order_id      uuid        PRIMARY KEY,
    status        text        NOT NULL CHECK (status IN ('held', 'committed', 'released', 'expired')),
    request_hash  text,
    expires_at    timestamptz NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX reservations_held_by_expiry ON reservations (expires_at) WHERE status = 'held';

CREATE TABLE reservation_items (
    order_id    uuid    NOT NULL REFERENCES reservations (order_id),
    product_id  uuid    NOT NULL REFERENCES products (id),
    quantity    integer NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (order_id, product_id)
);

-- Add `deltas` to the available stock of `product_ids`, all or nothing, one row at a time in product id order:
-- every stock change goes through here, so concurrent transactions lock rows in the same order and cannot
-- deadlock; `available >= 0` is checked on the locked row, so stock is never oversold. A shortage raises
-- SQLSTATE P0001 with the product id as the message and `insufficient_stock` or `unknown_product` as the hint (the
-- caller's transaction rolls back); returns the new version and available stock of each row.
CREATE FUNCTION adjust_stock(product_ids uuid[], deltas integer[])
RETURNS TABLE (product_id uuid, version bigint, available integer)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    wanted record;
BEGIN
    FOR wanted IN
        SELECT u.id, u.delta FROM unnest(product_ids, deltas) AS u (id, delta) ORDER BY u.id
    LOOP
        UPDATE stock AS s
        SET available = s.available + wanted.delta, version = s.version + 1
        WHERE s.product_id = wanted.id AND s.available + wanted.delta >= 0
        RETURNING s.product_id, s.version, s.available INTO product_id, version, available;
        IF NOT FOUND THEN
            IF EXISTS (SELECT 1 FROM products AS p WHERE p.id = wanted.id) THEN
                RAISE EXCEPTION USING ERRCODE = 'P0001', MESSAGE = wanted.id::text, HINT = 'insufficient_stock';
            END IF;
            RAISE EXCEPTION USING ERRCODE = 'P0001', MESSAGE = wanted.id::text, HINT = 'unknown_product';
        END IF;
        RETURN NEXT;
    END LOOP;
END
$$;

-- A reservation in one statement (one round trip, and the stock rows stay locked only while it runs): the
-- reservation row, the stock (adjust_stock: all or nothing), the lines. Returns the new stock rows with the
-- reservation's expiry; no rows when the order already has a reservation (the caller reads that one).
CREATE FUNCTION reserve_stock(
    p_order_id uuid, p_request_hash text, p_ttl_seconds integer, p_product_ids uuid[], p_quantities integer[]
)
RETURNS TABLE (expires_at timestamptz, product_id uuid, version bigint, available integer)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    held_until timestamptz;
BEGIN
    INSERT INTO reservations AS r (order_id, status, request_hash, expires_at)
    VALUES (p_order_id, 'held', p_request_hash, now() + make_interval(secs => p_ttl_seconds))
    ON CONFLICT (order_id) DO NOTHING
    RETURNING r.expires_at INTO held_until;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    RETURN QUERY
        SELECT held_until, a.product_id, a.version, a.available
        FROM adjust_stock(
            p_product_ids,
            ARRAY(SELECT -q.quantity FROM unnest(p_quantities) WITH ORDINALITY AS q (quantity, n) ORDER BY q.n)
        ) AS a;
    INSERT INTO reservation_items (order_id, product_id, quantity)
    SELECT p_order_id, u.id, u.quantity FROM unnest(p_product_ids, p_quantities) AS u (id, quantity);
END
$$;
