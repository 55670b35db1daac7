"""The payments API (internal: orders calls it over Service Connect; the gateway has no route to it)."""

from __future__ import annotations

import logging
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request, Response

from services.shop.common.app import OrjsonResponse, Pool, ServiceError
from services.shop.common.idempotency import HEADER, MAX_KEY_LENGTH, idempotent
from services.shop.payments.models import ErrorBody, InvalidRequestBody, Payment, PaymentList, PaymentRequest
from services.shop.payments.provider import ProviderRejectedError, ProviderUnavailableError
from services.shop.payments.service import (
    IdempotencyKeyReusedError,
    NotRefundableError,
    OrderAlreadyPaidError,
    PaymentNotFoundError,
    PaymentService,
)

log = logging.getLogger(__name__)

PROVIDER_RETRY_AFTER_SECONDS = 2
# Printable ASCII without spaces: what the shared idempotency module accepts, less the space (HTTP strips a header
# value's leading and trailing spaces, so a key with them would not survive the trip).
IDEMPOTENCY_KEY_PATTERN = rf"^[\x21-\x7e]{{1,{MAX_KEY_LENGTH}}}$"

router = APIRouter(tags=["payments"])


async def payment_service(request: Request) -> PaymentService:
    return request.app.state.payments


Payments = Annotated[PaymentService, Depends(payment_service)]
IdempotencyKey = Annotated[
    str,
    Header(
        alias=HEADER,
        pattern=IDEMPOTENCY_KEY_PATTERN,
        description="Required. A retry with the same key and body returns the first result and never charges "
        "again; the same key with a different body is refused (422).",
    ),
]


def _errors(descriptions: dict[int, str]) -> dict[int | str, dict[str, Any]]:
    return {
        status: {"model": InvalidRequestBody if status == 422 else ErrorBody, "description": text}
        for status, text in descriptions.items()
    }


_TOO_LARGE = "The body exceeds MAX_REQUEST_BODY_BYTES."
_DATABASE_DOWN = "The database is unavailable (`database_unavailable`); see Retry-After."
_PROVIDER_DOWN = "The payment provider failed transiently; the payment stays pending: retry with the same key."
_PROVIDER_REFUSED = "The payment provider refused the request permanently (not expected: a bug to investigate)."
_IN_PROGRESS = "A request with this Idempotency-Key is still running; see Retry-After."


def _payment_response(payment: Payment, status: int) -> tuple[dict[str, Any], Response]:
    body = payment.model_dump(mode="json")
    return body, OrjsonResponse(body, status_code=status)


@router.post(
    "/payments",
    status_code=201,
    response_model=Payment,
    responses=_errors(
        {
            409: f"The order already has a live payment (`order_already_paid`), or: {_IN_PROGRESS}",
            413: _TOO_LARGE,
            422: "Invalid body or Idempotency-Key, or the key was used with a different body.",
            502: _PROVIDER_REFUSED,
            503: f"{_PROVIDER_DOWN} Or: {_DATABASE_DOWN}",
        }
    ),
)
async def create_payment(request: PaymentRequest, key: IdempotencyKey, payments: Payments, pool: Pool) -> Response:
    """Charge an order once. 201 with status `captured` or `declined` (a decline is an answer, not an error)."""
    async with idempotent(pool, scope="POST /payments", key=key, request=request.model_dump(mode="json")) as attempt:
        if attempt.replay:
            return attempt.replay.response()  # the stored Payment, verbatim
        payment = await _pay(payments, key, request)
        body, response = _payment_response(payment, 201)
        async with pool.connection() as conn:
            await attempt.complete(conn, 201, body)
        return response


async def _pay(payments: PaymentService, key: str, request: PaymentRequest) -> Payment:
    try:
        return await payments.pay(key, request)
    except IdempotencyKeyReusedError as error:
        raise ServiceError(422, "idempotency_key_reused", str(error)) from None
    except OrderAlreadyPaidError as error:
        raise ServiceError(409, "order_already_paid", str(error)) from None
    except ProviderUnavailableError as error:
        raise _provider_unavailable(error) from None
    except ProviderRejectedError as error:
        raise _provider_rejected(error) from None


def _provider_unavailable(error: Exception) -> ServiceError:
    log.warning("payment provider unavailable", extra={"error": str(error)})
    return ServiceError(
        503,
        "provider_unavailable",
        f"the payment provider did not answer ({error}); retry with the same Idempotency-Key",
        {"Retry-After": str(PROVIDER_RETRY_AFTER_SECONDS)},
    )


def _provider_rejected(error: ProviderRejectedError) -> ServiceError:
    # Our provider keys are derived from payment ids, so a refusal here is a bug on one side or the other.
    log.error("payment provider refused a request", extra={"code": error.code, "error": str(error)})
    return ServiceError(502, f"provider_{error.code}", f"the payment provider refused the request: {error}")


@router.post(
    "/payments/{payment_id}/refund",
    response_model=Payment,
    responses=_errors(
        {
            404: "No such payment.",
            409: f"The payment is not captured (`not_refundable`), or: {_IN_PROGRESS}",
            413: _TOO_LARGE,
            422: "Invalid Idempotency-Key.",
            502: _PROVIDER_REFUSED,
            503: f"{_PROVIDER_DOWN} Or: {_DATABASE_DOWN}",
        }
    ),
)
async def refund_payment(payment_id: uuid.UUID, key: IdempotencyKey, payments: Payments, pool: Pool) -> Response:
    """Refund a captured payment in full. Idempotent: a refunded payment is returned as it is."""
    scope = f"POST /payments/{payment_id}/refund"
    async with idempotent(pool, scope=scope, key=key, request={"payment_id": str(payment_id)}) as attempt:
        if attempt.replay:
            return attempt.replay.response()
        payment = await _refund(payments, payment_id)
        body, response = _payment_response(payment, 200)
        async with pool.connection() as conn:
            await attempt.complete(conn, 200, body)
        return response


async def _refund(payments: PaymentService, payment_id: uuid.UUID) -> Payment:
    try:
        return await payments.refund(payment_id)
    except PaymentNotFoundError as error:
        raise ServiceError(404, "payment_not_found", str(error)) from None
    except NotRefundableError as error:
        raise ServiceError(409, "not_refundable", str(error)) from None
    except ProviderUnavailableError as error:
        raise _provider_unavailable(error) from None
    except ProviderRejectedError as error:
        raise _provider_rejected(error) from None


@router.get(
    "/payments/{payment_id}",
    responses=_errors({404: "No such payment.", 422: "payment_id is not a UUID.", 503: _DATABASE_DOWN}),
)
async def get_payment(payment_id: uuid.UUID, payments: Payments) -> Payment:
    """One payment, with its current status."""
    try:
        return await payments.get(payment_id)
    except PaymentNotFoundError as error:
        raise ServiceError(404, "payment_not_found", str(error)) from None


@router.get("/payments", responses=_errors({422: "order_id is missing or not a UUID.", 503: _DATABASE_DOWN}))
async def list_payments(
    order_id: Annotated[uuid.UUID, Query(description="The order whose payments to list.")], payments: Payments
) -> PaymentList:
    """An order's payments, oldest first (declined attempts, then at most one live payment)."""
    return PaymentList(items=await payments.for_order(order_id))
