"""Short-lived EdDSA (Ed25519) access tokens: `users` signs them, every service verifies them locally.

Signing (users only): `TokenSigner.from_settings(settings)` takes the private key from `JWT_SIGNING_KEY` (base64 of
a 32-byte seed; Secrets Manager in AWS) or `JWT_SIGNING_KEY_FILE` (local runs: that same base64 text, or a PEM
Ed25519 private key). Tokens last JWT_TTL_SECONDS (15 minutes) and carry iss, aud, sub, iat, exp and jti; their
`kid` header is the key's RFC 7638 thumbprint, and `jwks()` is the public JWK set users serves at
`GET /.well-known/jwks.json`. After a rotation the key before it (`JWT_SIGNING_KEY_PREVIOUS`: the secret's
AWSPREVIOUS version; `JWT_SIGNING_KEY_PREVIOUS_FILE` locally) is published too, never used to sign, so tokens it
signed keep verifying until they expire; a key older than that is in no set, and its tokens fail.

Verification (every service): `TokenVerifier` accepts EdDSA only (so neither `none` nor an HS256 token keyed with
the public key gets through), checks iss, aud and exp (JWT_LEEWAY_SECONDS of clock skew), and finds the key by
`kid` in a static JWK set (`JWT_PUBLIC_KEY`) or in the set fetched from `USERS_URL`, cached and refetched on an
unknown kid at most every JWKS_REFRESH_SECONDS (a token with a made-up kid cannot make us hammer users). If the
set cannot be fetched, requests get 503 (we cannot tell), not 401 (the token may be fine) nor 500.

    app = create_service_app(settings, ..., lifespan_hooks=[token_verification])

    @router.get("/orders")
    async def list_orders(user: CurrentUser) -> ...: ...   # user.user_id, user.token_id
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Protocol

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from fastapi import Depends, FastAPI, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from jwt.algorithms import OKPAlgorithm
from pydantic import SecretStr

from services.common.security_events import AUTH_FAILURE, security_event
from services.shop.common.app import ServiceError, ServiceRuntime
from services.shop.common.settings import ShopSettings

log = logging.getLogger(__name__)

ALGORITHM = "EdDSA"
SEED_BYTES = 32
JWKS_PATH = "/.well-known/jwks.json"
_REQUIRED_CLAIMS = ["iss", "aud", "sub", "iat", "exp", "jti"]


class SigningKeyError(ValueError):
    """The signing key setting or file is missing or not an Ed25519 key."""


class KeysUnavailableError(Exception):
    """The JWK set could not be fetched, so no token can be checked right now."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a verified token speaks for."""

    user_id: str
    token_id: str


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str
    token_id: str
    expires_at: datetime
    expires_in: int


# --- Keys ---


def generate_seed() -> str:
    """A new private key: base64 of a random 32-byte Ed25519 seed (the JWT_SIGNING_KEY format)."""
    return base64.b64encode(os.urandom(SEED_BYTES)).decode()


def write_signing_key_file(path: Path) -> Path:
    """A new key file readable by its owner only (local runs and tests); returns `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(generate_seed() + "\n")
    return path


def private_key_from_seed(text: str, *, source: str = "JWT_SIGNING_KEY") -> Ed25519PrivateKey:
    try:
        seed = base64.b64decode(text.strip(), validate=True)
    except binascii.Error:
        raise SigningKeyError(f"{source} must be base64 of a 32-byte Ed25519 seed; it is not valid base64") from None
    if len(seed) != SEED_BYTES:
        raise SigningKeyError(f"{source} must be base64 of a 32-byte Ed25519 seed, got {len(seed)} bytes")
    return Ed25519PrivateKey.from_private_bytes(seed)


def private_key_from_file(path: Path, *, variable: str = "JWT_SIGNING_KEY_FILE") -> Ed25519PrivateKey:
    """A key file holds a base64 seed or a PEM (PKCS#8) Ed25519 private key (`openssl genpkey -algorithm ed25519`)."""
    try:
        text = path.read_text()
    except OSError as error:
        raise SigningKeyError(f"{variable}={path} cannot be read: {error.strerror}") from None
    if not text.lstrip().startswith("-----BEGIN"):
        return private_key_from_seed(text, source=f"{variable}={path}")
    key = serialization.load_pem_private_key(text.encode(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError(f"{variable}={path} holds a {type(key).__name__}; an Ed25519 key is required")
    return key


def configured_key(settings: ShopSettings, variable: str) -> Ed25519PrivateKey | None:
    """The key in `<variable>` (base64 seed) or `<variable>_FILE`, None when neither is set."""
    value: SecretStr | None = getattr(settings, variable)
    path: Path | None = getattr(settings, f"{variable}_FILE")
    if value is not None:
        return private_key_from_seed(value.get_secret_value(), source=variable)
    return private_key_from_file(path, variable=f"{variable}_FILE") if path is not None else None


def public_jwk(public_key: Ed25519PublicKey) -> dict[str, str]:
    """The public key as a JWK with its RFC 7638 thumbprint as `kid`."""
    jwk: dict[str, str] = OKPAlgorithm.to_jwk(public_key, as_dict=True)
    return {**jwk, "kid": thumbprint(jwk), "use": "sig", "alg": ALGORITHM}


def thumbprint(jwk: Mapping[str, str]) -> str:
    """RFC 7638: SHA-256 of the required members (crv, kty, x for OKP) in lexicographic order, base64url."""
    required = {name: jwk[name] for name in ("crv", "kty", "x")}
    canonical = json.dumps(required, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(hashlib.sha256(canonical).digest()).rstrip(b"=").decode()


# --- Signing ---


class TokenSigner:
    """Issues access tokens (the users service)."""

    def __init__(
        self,
        private_key: Ed25519PrivateKey,
        *,
        issuer: str,
        audience: str,
        ttl_seconds: int = 900,
        previous_key: Ed25519PublicKey | None = None,
    ) -> None:
        """`previous_key`: the key before the last rotation, published (not used) until its tokens have expired."""
        self._private_key = private_key
        self.issuer = issuer
        self.audience = audience
        self.ttl_seconds = ttl_seconds
        self._jwk = public_jwk(private_key.public_key())
        self.kid = self._jwk["kid"]
        previous = public_jwk(previous_key) if previous_key is not None else None
        # Before the first rotation the previous version may be the current key itself: publish it once.
        self._published = [self._jwk] + ([previous] if previous is not None and previous["kid"] != self.kid else [])

    @classmethod
    def from_settings(cls, settings: ShopSettings) -> TokenSigner:
        key = configured_key(settings, "JWT_SIGNING_KEY")
        if key is None:
            raise SigningKeyError(
                "no signing key: set JWT_SIGNING_KEY (base64 of a 32-byte Ed25519 seed) or JWT_SIGNING_KEY_FILE"
            )
        previous = configured_key(settings, "JWT_SIGNING_KEY_PREVIOUS")
        return cls(
            key,
            issuer=settings.JWT_ISSUER,
            audience=settings.JWT_AUDIENCE,
            ttl_seconds=settings.JWT_TTL_SECONDS,
            previous_key=previous.public_key() if previous is not None else None,
        )

    def issue(self, subject: str, *, now: datetime | None = None) -> IssuedToken:
        issued_at = (now or datetime.now(UTC)).replace(microsecond=0)
        expires_at = issued_at + timedelta(seconds=self.ttl_seconds)
        token_id = uuid.uuid4().hex
        claims = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": subject,
            "iat": int(issued_at.timestamp()),
            "exp": int(expires_at.timestamp()),
            "jti": token_id,
        }
        token = jwt.encode(claims, self._private_key, algorithm=ALGORITHM, headers={"kid": self.kid})
        return IssuedToken(token, token_id, expires_at, self.ttl_seconds)

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        """The public JWK set (what `GET /.well-known/jwks.json` returns): the signing key, then the previous one."""
        return {"keys": [dict(jwk) for jwk in self._published]}


# --- Verification ---


class KeySource(Protocol):
    async def key(self, kid: str) -> jwt.PyJWK | None:
        """The key for `kid`, None if there is none; KeysUnavailableError if that cannot be known now."""
        ...

    async def aclose(self) -> None: ...


def parse_jwks(data: Any, *, source: str) -> dict[str, jwt.PyJWK]:
    """The Ed25519 signing keys of a JWK set, by kid; other keys are skipped."""
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise ValueError(f"{source}: expected a JWK set, an object with a `keys` list")
    keys: dict[str, jwt.PyJWK] = {}
    for entry in data["keys"]:
        if isinstance(entry, dict) and entry.get("kty") == "OKP" and entry.get("crv") == "Ed25519":
            kid = entry.get("kid") or thumbprint(entry)
            keys[kid] = jwt.PyJWK(entry, algorithm=ALGORITHM)
    if not keys:
        raise ValueError(f"{source}: the JWK set holds no Ed25519 key")
    return keys


class StaticKeys:
    """A fixed JWK set (JWT_PUBLIC_KEY, the users service itself, tests)."""

    def __init__(self, jwks: Mapping[str, Any], *, source: str = "JWK set") -> None:
        self._keys = parse_jwks(dict(jwks), source=source)

    async def key(self, kid: str) -> jwt.PyJWK | None:
        return self._keys.get(kid)

    async def aclose(self) -> None:
        return None


class RemoteKeys:
    """The users service's JWK set, fetched on first use and again on an unknown kid, at most every
    `refresh_seconds` (failed fetches included, so an outage of users costs one timeout per interval)."""

    def __init__(self, url: str, client: httpx.AsyncClient, *, refresh_seconds: float) -> None:
        self.url = url
        self._client = client
        self._refresh_seconds = refresh_seconds
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at: float | None = None
        self._error: str | None = None
        self._lock = asyncio.Lock()

    async def key(self, kid: str) -> jwt.PyJWK | None:
        found = self._keys.get(kid)
        if found is not None:
            return found
        async with self._lock:  # concurrent requests with a new kid wait for one fetch
            if kid not in self._keys and self._may_fetch():
                await self._fetch()
        found = self._keys.get(kid)
        if found is None and self._error is not None:
            raise KeysUnavailableError(self._error)
        return found

    def _may_fetch(self) -> bool:
        return self._fetched_at is None or time.monotonic() - self._fetched_at >= self._refresh_seconds

    async def _fetch(self) -> None:
        self._fetched_at = time.monotonic()
        try:
            response = await self._client.get(self.url)
            response.raise_for_status()
            self._keys = parse_jwks(response.json(), source=self.url)
        except (httpx.HTTPError, ValueError) as error:
            self._error = f"cannot fetch the JWK set from {self.url}: {type(error).__name__}: {error}"
            return
        self._error = None

    async def aclose(self) -> None:
        await self._client.aclose()


class TokenVerifier:
    def __init__(self, keys: KeySource, *, issuer: str, audience: str, leeway_seconds: float = 30.0) -> None:
        self._keys = keys
        self.issuer = issuer
        self.audience = audience
        self.leeway_seconds = leeway_seconds

    @classmethod
    def from_jwks(
        cls, jwks: Mapping[str, Any], *, issuer: str, audience: str, leeway_seconds: float = 30.0
    ) -> TokenVerifier:
        return cls(StaticKeys(jwks), issuer=issuer, audience=audience, leeway_seconds=leeway_seconds)

    @classmethod
    def from_settings(cls, settings: ShopSettings) -> TokenVerifier:
        """A static set from JWT_PUBLIC_KEY when set, else the users service's set at USERS_URL."""
        if settings.JWT_PUBLIC_KEY:
            try:
                data = json.loads(settings.JWT_PUBLIC_KEY)
            except json.JSONDecodeError:
                raise ValueError('JWT_PUBLIC_KEY must be a JWK set in JSON ({"keys": [...]}) or one JWK') from None
            jwks = data if isinstance(data, dict) and "keys" in data else {"keys": [data]}
            keys: KeySource = StaticKeys(jwks, source="JWT_PUBLIC_KEY")
        elif settings.USERS_URL:
            client = httpx.AsyncClient(timeout=settings.JWKS_TIMEOUT_SECONDS)
            url = settings.USERS_URL.rstrip("/") + JWKS_PATH
            keys = RemoteKeys(url, client, refresh_seconds=settings.JWKS_REFRESH_SECONDS)
        else:
            raise ValueError("token verification needs JWT_PUBLIC_KEY (a JWK set) or USERS_URL (the users service)")
        return cls(
            keys, issuer=settings.JWT_ISSUER, audience=settings.JWT_AUDIENCE, leeway_seconds=settings.JWT_LEEWAY_SECONDS
        )

    async def verify(self, token: str) -> Principal:
        """The principal of a valid token; InvalidTokenError (why) or KeysUnavailableError otherwise."""
        header = jwt.get_unverified_header(token)
        if header.get("alg") != ALGORITHM:
            raise jwt.InvalidAlgorithmError(f"the token's alg is {header.get('alg')!r}; only {ALGORITHM} is accepted")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise jwt.InvalidTokenError("the token has no kid header")
        key = await self._keys.key(kid)
        if key is None:
            raise jwt.InvalidTokenError(f"no signing key with kid {kid!r}")
        claims = jwt.decode(
            token,
            key.key,
            algorithms=[ALGORITHM],
            audience=self.audience,
            issuer=self.issuer,
            leeway=self.leeway_seconds,
            options={"require": _REQUIRED_CLAIMS},
        )
        return Principal(user_id=str(claims["sub"]), token_id=str(claims["jti"]))

    async def aclose(self) -> None:
        await self._keys.aclose()


# --- FastAPI ---

_bearer = HTTPBearer(auto_error=False, description="An access token from `POST /auth/token` (users).")


def install_token_verifier(app: FastAPI, verifier: TokenVerifier) -> None:
    """Make `current_user` verify with `verifier` (the hook below does this from settings)."""
    app.state.token_verifier = verifier


@asynccontextmanager
async def token_verification(runtime: ServiceRuntime) -> AsyncIterator[None]:
    """Lifespan hook: a verifier from the service's settings for `current_user`, closed at shutdown."""
    verifier = TokenVerifier.from_settings(runtime.settings)
    install_token_verifier(runtime.app, verifier)
    try:
        yield
    finally:
        await verifier.aclose()


def _unauthorized(detail: str, *, invalid: bool = True) -> ServiceError:
    # RFC 6750: a request without credentials gets a bare challenge, a bad token `error="invalid_token"`.
    challenge = 'Bearer error="invalid_token"' if invalid else "Bearer"
    return ServiceError(401, "invalid_token" if invalid else "unauthenticated", detail, {"WWW-Authenticate": challenge})


async def current_user(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Principal:
    """The caller, from `Authorization: Bearer <token>`; 401 without a valid token, 503 if keys are unavailable."""
    if credentials is None:
        raise _unauthorized("an Authorization: Bearer <access token> header is required", invalid=False)
    verifier: TokenVerifier | None = getattr(request.app.state, "token_verifier", None)
    if verifier is None:
        raise RuntimeError("no token verifier: add the token_verification lifespan hook or call install_token_verifier")
    try:
        return await verifier.verify(credentials.credentials)
    except KeysUnavailableError as error:
        log.warning("token keys unavailable", extra={"error": str(error)})
        raise ServiceError(
            503, "keys_unavailable", "cannot verify tokens right now; retry shortly", {"Retry-After": "5"}
        ) from None
    except jwt.InvalidTokenError as error:
        # The kind of failure (expired, bad signature, wrong audience), never the token.
        security_event(AUTH_FAILURE, "token refused", reason=type(error).__name__, route=request.url.path)
        raise _unauthorized(f"invalid token: {error}") from None


CurrentUser = Annotated[Principal, Depends(current_user)]
