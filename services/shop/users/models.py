"""Request and response bodies of the users API.

Emails are matched by a deliberately plain pattern (ASCII local part, dotted host name; no quoted local parts,
IP literals or internationalised domains) and stored normalised: lower case. The schema's patterns are exactly
what is accepted, so clients and fuzzers see the real rules.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, field_validator

from services.shop.users.passwords import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH, normalise_password

EMAIL_PATTERN = (
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}"
    r"@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$"
)
MAX_EMAIL_LENGTH = 254
# At least one visible character; no control characters (PostgreSQL text cannot even hold NUL).
NAME_PATTERN = r"^[^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f][^\x00-\x1f\x7f]*$"
MAX_NAME_LENGTH = 100

EmailAddress = Annotated[
    str,
    Field(
        pattern=EMAIL_PATTERN,
        max_length=MAX_EMAIL_LENGTH,
        description="Email address; compared and stored in lower case.",
        examples=["ada@example.com"],
    ),
]


class Registration(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: EmailAddress
    password: str = Field(
        min_length=MIN_PASSWORD_LENGTH,
        max_length=MAX_PASSWORD_LENGTH,
        description=f"{MIN_PASSWORD_LENGTH}-{MAX_PASSWORD_LENGTH} characters; not the email address, not a "
        "well-known password (with or without digits and symbols around it), at least 5 different characters.",
    )
    name: str = Field(pattern=NAME_PATTERN, max_length=MAX_NAME_LENGTH, description="Display name.")

    @field_validator("email")
    @classmethod
    def _lower_email(cls, email: str) -> str:
        return email.lower()

    @field_validator("password")
    @classmethod
    def _normalise_password(cls, password: str) -> str:
        return normalise_password(password)

    @field_validator("name")
    @classmethod
    def _strip_name(cls, name: str) -> str:
        return name.strip()


class Credentials(BaseModel):
    """POST /auth/token as JSON; OAuth2 password-flow clients send `username` and `password` as form fields."""

    model_config = ConfigDict(extra="forbid")

    email: EmailAddress
    password: str = Field(min_length=1, max_length=MAX_PASSWORD_LENGTH)

    @field_validator("email")
    @classmethod
    def _lower_email(cls, email: str) -> str:
        return email.lower()

    @field_validator("password")
    @classmethod
    def _normalise_password(cls, password: str) -> str:
        return normalise_password(password)


class User(BaseModel):
    id: UUID
    email: str
    name: str
    created_at: datetime


class AccessToken(BaseModel):
    access_token: str = Field(description="EdDSA-signed JWT; send as `Authorization: Bearer <token>`.")
    token_type: Literal["bearer"] = "bearer"
    expires_in: int = Field(description="Seconds until the token expires.")


class Jwk(BaseModel):
    kty: Literal["OKP"]
    crv: Literal["Ed25519"]
    x: str
    kid: str
    use: Literal["sig"]
    alg: Literal["EdDSA"]


class JwkSet(BaseModel):
    keys: list[Jwk]


class ErrorBody(BaseModel):
    error: str = Field(description="Machine-readable error code.")
    detail: str = Field(description="What was wrong and what is allowed.")


class ValidationIssue(BaseModel):
    loc: list[str | int] = Field(description='Where: e.g. ["body", "email"].')
    msg: str
    type: str


class InvalidRequestBody(BaseModel):
    """422: `invalid_request` lists the schema violations; other codes explain one problem in `detail`."""

    error: str = Field(description="`invalid_request`, or a specific code.")
    detail: str | list[ValidationIssue]
