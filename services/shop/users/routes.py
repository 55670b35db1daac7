"""The users API: sign-up, login (access tokens), the caller's account, and the token signing keys."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from services.common.security_events import AUTH_FAILURE, RATE_LIMITED, security_event
from services.shop.common.app import Pool, ServiceError
from services.shop.common.auth import JWKS_PATH, CurrentUser, TokenSigner
from services.shop.users import repository
from services.shop.users.models import (
    AccessToken,
    Credentials,
    ErrorBody,
    InvalidRequestBody,
    JwkSet,
    Registration,
    User,
)
from services.shop.users.passwords import HashingBusyError, PasswordHashing, password_problem
from services.shop.users.throttle import LoginThrottle

log = logging.getLogger(__name__)

JWKS_MAX_AGE_SECONDS = 300
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"


@dataclass(frozen=True)
class UsersState:
    """What the users routes need beyond the pool (made by the app's lifespan hook)."""

    hashing: PasswordHashing
    throttle: LoginThrottle
    signer: TokenSigner


async def users_state(request: Request) -> UsersState:
    return request.app.state.users


State = Annotated[UsersState, Depends(users_state)]

router = APIRouter(tags=["users"])


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    descriptions = {
        401: "Missing, invalid or expired credentials.",
        404: "No such user.",
        409: "The email address is already registered (`email_taken`).",
        413: "The body exceeds MAX_REQUEST_BODY_BYTES.",
        415: "The body is neither JSON nor a form.",
        422: "The body breaks the schema (`invalid_request`) or the password policy (`weak_password`).",
        429: "Too many failed logins for this email; see Retry-After.",
        503: "Password hashing is at capacity, or the database is unavailable; see Retry-After.",
    }
    return {
        status: {"model": InvalidRequestBody if status == 422 else ErrorBody, "description": descriptions[status]}
        for status in statuses
    }


def _busy(error: HashingBusyError) -> ServiceError:
    return ServiceError(503, "busy", f"{error}; nothing was changed", {"Retry-After": str(error.retry_after_seconds)})


@router.post("/users", status_code=201, responses=_errors(409, 413, 422, 503))
async def register(registration: Registration, state: State, pool: Pool) -> User:
    """Create an account. The email is stored in lower case and must not be registered yet."""
    problem = password_problem(registration.password, registration.email)
    if problem is not None:  # not a model validator: its error would echo the password back
        raise ServiceError(422, "weak_password", problem)
    try:
        password_hash = await state.hashing.hash(registration.password)
    except HashingBusyError as error:
        raise _busy(error) from None
    async with pool.connection() as conn:
        row = await repository.insert_user(conn, registration.email, registration.name, password_hash)
    if row is None:
        raise ServiceError(409, "email_taken", f"an account with email {registration.email!r} already exists")
    return User.model_validate(row)


_TOKEN_REQUEST_BODY = {
    "required": True,
    "content": {
        "application/json": {"schema": Credentials.model_json_schema()},
        FORM_CONTENT_TYPE: {
            "schema": {
                "type": "object",
                "description": "OAuth2 password grant (RFC 6749 section 4.3); `username` is the email.",
                "properties": {
                    "grant_type": {"type": "string", "enum": ["password"]},
                    "username": Credentials.model_json_schema()["properties"]["email"],
                    "password": Credentials.model_json_schema()["properties"]["password"],
                },
                "required": ["username", "password"],
            }
        },
    },
}


async def _credentials(request: Request) -> Credentials:
    """Credentials from a JSON body, or from OAuth2 password-grant form fields."""
    content_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if content_type == FORM_CONTENT_TYPE:
        form = await request.form()
        grant_type = form.get("grant_type")
        if grant_type is not None and grant_type != "password":
            raise ServiceError(400, "unsupported_grant_type", "grant_type must be `password` (or absent)")
        try:
            return Credentials.model_validate({"email": form.get("username"), "password": form.get("password")})
        except ValidationError as error:
            raise _invalid(error, field_names={"email": "username"}) from None
    if content_type in ("application/json", ""):
        try:
            return Credentials.model_validate_json(await request.body())
        except ValidationError as error:
            raise _invalid(error, field_names={}) from None
    raise ServiceError(
        415, "unsupported_media_type", f"send application/json or {FORM_CONTENT_TYPE}, not {content_type!r}"
    )


def _invalid(error: ValidationError, field_names: dict[str, str]) -> RequestValidationError:
    """The same 422 FastAPI gives for a declared body, with locations named as the client sent them."""
    issues = error.errors(include_url=False)
    for issue in issues:
        issue["loc"] = ("body", *(field_names.get(str(part), part) for part in issue["loc"]))
    return RequestValidationError(issues)


@router.post(
    "/auth/token",
    responses={
        **_errors(401, 413, 415, 422, 429, 503),
        400: {"model": ErrorBody, "description": "A form with a grant_type other than `password`."},
    },
    openapi_extra={"requestBody": _TOKEN_REQUEST_BODY},
)
async def issue_token(request: Request, response: Response, state: State, pool: Pool) -> AccessToken:
    """Log in: an access token (15 minutes) for a correct email and password."""
    credentials = await _credentials(request)
    throttle = await state.throttle.begin(credentials.email)
    if throttle.retry_after_seconds:
        security_event(RATE_LIMITED, "login refused: too many failed logins", limiter="login")
        raise ServiceError(
            429,
            "too_many_failed_logins",
            f"too many failed logins for this email; try again in {throttle.retry_after_seconds} s",
            {"Retry-After": str(throttle.retry_after_seconds)},
        )
    async with pool.connection() as conn:
        row = await repository.credentials_by_email(conn, credentials.email)
    stored_hash = row["password_hash"] if row else None
    try:
        # Unknown emails are verified against a dummy hash: the same work, so the timing tells nothing.
        valid = await state.hashing.verify(stored_hash, credentials.password)
    except HashingBusyError as error:
        await state.throttle.give_back(credentials.email)
        raise _busy(error) from None
    if row is None or not valid:  # already counted by `begin`
        security_event(AUTH_FAILURE, "login failed", reason="invalid_credentials", route="POST /auth/token")
        raise ServiceError(401, "invalid_credentials", "wrong email or password", {"WWW-Authenticate": "Bearer"})
    await state.throttle.clear(credentials.email)
    await _upgrade_hash(state, pool, row["id"], row["password_hash"], credentials.password)
    issued = state.signer.issue(str(row["id"]))
    response.headers["Cache-Control"] = "no-store"  # RFC 6749 section 5.1
    return AccessToken(access_token=issued.token, expires_in=issued.expires_in)


async def _upgrade_hash(state: UsersState, pool: Pool, user_id: uuid.UUID, old_hash: str, password: str) -> None:
    """Rehash with the current parameters if the stored hash used others (the password is known only now)."""
    if not state.hashing.needs_rehash(old_hash):
        return
    try:
        new_hash = await state.hashing.hash(password)
    except HashingBusyError:
        return  # the login still succeeds; the next one upgrades the hash
    async with pool.connection() as conn:
        await repository.replace_password_hash(conn, user_id, old_hash, new_hash)
    log.info("password hash upgraded to the current parameters", extra={"user_id": str(user_id)})


@router.get("/users/me", responses=_errors(401, 404, 503))
async def me(principal: CurrentUser, pool: Pool) -> User:
    """The account the access token was issued to."""
    try:
        user_id = uuid.UUID(principal.user_id)
    except ValueError:
        raise ServiceError(401, "invalid_token", "the token's subject is not a user id") from None
    async with pool.connection() as conn:
        row = await repository.user_by_id(conn, user_id)
    if row is None:
        raise ServiceError(404, "user_not_found", f"user {user_id} no longer exists")
    return User.model_validate(row)


@router.get(JWKS_PATH, tags=["keys"])
async def jwks(state: State, response: Response) -> JwkSet:
    """The public keys that verify access tokens (RFC 7517). Cacheable: keys change only on rotation."""
    response.headers["Cache-Control"] = f"public, max-age={JWKS_MAX_AGE_SECONDS}"
    return JwkSet.model_validate(state.signer.jwks())
