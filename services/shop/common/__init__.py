"""What every shop service is built from (docs/shop.md).

- settings: `ShopSettings`, the shared environment contract, and `load_settings`;
- database: the service's pool (own role, search_path pinned to its schema), its migrations, the connection budget;
- app: `create_service_app` (/health, /ready, JSON errors, body limit, trace context) and `run` (uvicorn);
- observability: W3C trace context and trace ids in every log line;
- auth: EdDSA access tokens, `TokenSigner` (users) and `TokenVerifier` / `CurrentUser` (everyone);
- idempotency: server-side Idempotency-Key handling for POST endpoints;
- calls, breaker, events: calls between services, circuit breakers, the outbox relay and queue consumer;
- healthcheck: the container HEALTHCHECK (`python -m services.shop.common.healthcheck`).
"""
