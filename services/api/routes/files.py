"""Streamed uploads to shared storage. The body is the file itself (no multipart), hashed and
size-checked while it streams to a temp file that is renamed into place only when complete."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import re
import uuid
from datetime import datetime
from pathlib import Path
from typing import Annotated, BinaryIO

from fastapi import APIRouter, Header, HTTPException, Query, Request, status
from pydantic import BaseModel

from services.api import repository
from services.api.deps import RateLimitedClient, State
from services.common.security_events import UPLOAD_REJECTED, security_event
from services.common.storage import Storage, upload_key

router = APIRouter(prefix="/files", tags=["files"])

CONTENT_TYPE_PATTERN = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]{0,62}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}$")
FILENAME_FORBIDDEN = re.compile(r"[/\\\x00-\x1f\x7f]")
WRITE_CHUNK = 1024 * 1024
# The file system (EFS, or a task's own disk) or the caller's quota is full: nothing the client can fix.
STORAGE_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
STORAGE_FULL_RETRY_AFTER_SECONDS = 30


class FilePublic(BaseModel):
    id: uuid.UUID
    filename: str | None
    content_type: str
    size_bytes: int
    sha256: str
    created_at: datetime


def validate_filename(filename: str | None) -> str | None:
    """The filename is display metadata only; reject anything path-like so nobody comes to rely on it."""
    if filename is None:
        return None
    if FILENAME_FORBIDDEN.search(filename) or filename in (".", "..") or filename.startswith(".."):
        # The name itself is not logged: it is attacker-controlled (log forging, secrets pasted by mistake).
        security_event(UPLOAD_REJECTED, "upload refused: path-like filename", reason="path_like_filename",
                       filename_length=len(filename))  # fmt: skip
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST,
            "filename must be a plain name: no '/', '\\', control characters, or leading '..'",
        )
    return filename


def validate_content_type(raw: str | None) -> str:
    content_type = (raw or "application/octet-stream").split(";")[0].strip().lower()
    if not CONTENT_TYPE_PATTERN.fullmatch(content_type):
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "Content-Type must be a media type such as image/png")
    return content_type


def storage_full() -> HTTPException:
    return HTTPException(
        status.HTTP_507_INSUFFICIENT_STORAGE,
        "storage is full: nothing was stored; retry after Retry-After seconds",
        headers={"Retry-After": str(STORAGE_FULL_RETRY_AFTER_SECONDS)},
    )


def too_large(limit: int) -> HTTPException:
    return HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, f"file exceeds the upload limit of {limit} bytes")


async def _write_chunks(request: Request, handle: BinaryIO, limit: int) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    pending = bytearray()
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        digest.update(chunk)
        pending += chunk
        if len(pending) >= WRITE_CHUNK:
            await asyncio.to_thread(handle.write, bytes(pending))
            pending.clear()
    await asyncio.to_thread(handle.write, bytes(pending))
    return size, digest.hexdigest()


async def _stream_to_storage(request: Request, storage: Storage, key: str, limit: int) -> tuple[int, str]:
    """Stream the body to a temp file and publish it under `key`; a full disk is a 507 and leaves no file."""
    temp: Path | None = None
    published = False
    try:
        temp, handle = storage.new_temp()
        with handle:
            size, sha256 = await _write_chunks(request, handle, limit)
        storage.publish(temp, key)
        published = True
        return size, sha256
    except OSError as exc:
        if exc.errno in STORAGE_FULL_ERRNOS:
            raise storage_full() from exc
        raise
    finally:
        if temp is not None and not published:
            storage.discard(temp)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=FilePublic,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
            "description": "Raw file bytes; Content-Type is their media type (image/png, text/csv...).",
        }
    },
    responses={
        400: {"description": "Path-like filename or malformed Content-Type."},
        411: {"description": "Neither Content-Length nor a chunked body."},
        413: {"description": "File larger than MAX_UPLOAD_BYTES."},
        429: {"description": "Rate limit exceeded; see Retry-After."},
        507: {"description": "Storage is full; nothing was stored. Retry after Retry-After seconds."},
    },
)
async def upload_file(
    request: Request,
    state: State,
    client: RateLimitedClient,
    filename: Annotated[str | None, Query(max_length=255, description="Original name (metadata only).")] = None,
    content_type: Annotated[str | None, Header()] = None,
    content_length: Annotated[int | None, Header(ge=0)] = None,
) -> FilePublic:
    """Upload a file (streamed to shared storage, SHA-256 computed on the way); its id is an input_file_id."""
    name = validate_filename(filename)
    media_type = validate_content_type(content_type)
    limit = state.settings.MAX_UPLOAD_BYTES
    if content_length is not None and content_length > limit:
        raise too_large(limit)
    if content_length is None and request.headers.get("transfer-encoding", "").lower() != "chunked":
        raise HTTPException(status.HTTP_411_LENGTH_REQUIRED, "send Content-Length or a chunked body")
    file_id = uuid.uuid4()
    key = upload_key(file_id)
    size, sha256 = await _stream_to_storage(request, state.storage, key, limit)
    values = {
        "id": file_id,
        "client_id": client,
        "storage_key": key,
        "filename": name,
        "content_type": media_type,
        "size_bytes": size,
        "sha256": sha256,
    }
    try:
        async with state.pool.connection() as conn:
            row = await repository.insert_file(conn, values)
    except BaseException:
        state.storage.discard(Path(state.storage.path(key)))
        raise
    return FilePublic.model_validate(dict(row))
