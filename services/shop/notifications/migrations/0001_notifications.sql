-- What was done with each mailed order event: one row per event id (a redelivery finds its row and sends nothing).
-- `sent`: the provider accepted it (sent_at, provider_message_id); `rejected`: refused for good (error), dropped.
CREATE TABLE notifications (
    event_id             uuid        PRIMARY KEY,
    order_id             uuid        NOT NULL,
    topic                text        NOT NULL,
    template             text        NOT NULL CHECK (template IN ('order_confirmed', 'order_cancelled', 'payment_failed')),
    recipient            text        NOT NULL,
    status               text        NOT NULL CHECK (status IN ('sent', 'rejected')),
    provider_message_id  text,
    error                text,
    sent_at              timestamptz,
    created_at           timestamptz NOT NULL DEFAULT now(),
    CHECK ((status = 'sent') = (sent_at IS NOT NULL)),
    CHECK ((status = 'rejected') = (error IS NOT NULL))
);

CREATE INDEX notifications_by_order ON notifications (order_id, created_at);
