"""The lean asyncio SQS client (services/common/sqs_async.py): against fauxqs for the real protocol, and
against a scripted loopback HTTP server for retries, framing and the SigV4 signature on the wire; and the
outbox relay on top of it when SQS fails."""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime
import ipaddress
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials, RefreshableCredentials
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from psycopg import AsyncConnection
from psycopg.rows import DictRow, dict_row

from services.api import repository
from services.api.relay import OutboxRelay
from services.common.db import async_pool, connection_password, conninfo
from services.common.settings import Settings
from services.common.sqs import LOCAL_CREDENTIALS, async_sqs_client, blocking_sqs_client, sqs_client
from services.common.sqs_async import AsyncSqsClient, BlockingSqsClient, ProtocolError, SqsError
from services.fauxqs import free_port

ENTRIES = [{"Id": "1", "MessageBody": '{"job_id":"x"}'}]
OK_BODY = b'{"Successful":[{"Id":"1","MessageId":"m1","MD5OfMessageBody":"x"}],"Failed":[]}'


def ok(body: bytes = OK_BODY, extra: bytes = b"") -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.0\r\n"
        + extra
        + (b"Content-Length: %d\r\n\r\n" % len(body) + body)
    )


@dataclass
class Captured:
    head: list[bytes]
    body: bytes

    def header(self, name: str) -> str:
        for line in self.head[1:]:
            key, _, value = line.decode("latin-1").partition(":")
            if key.strip().lower() == name.lower():
                return value.strip()
        raise KeyError(name)


Reply = Callable[[Captured, asyncio.StreamWriter], Awaitable[bool]]


@dataclass
class ScriptedServer:
    """A loopback HTTP/1.1 server answering each request with the next reply; a reply returns False to
    close the connection after it."""

    replies: list[Reply]
    requests: list[Captured] = field(default_factory=list)
    connections: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                request_line = await reader.readline()
                if not request_line:
                    return
                head = [request_line.rstrip(b"\r\n")]
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    head.append(line.rstrip(b"\r\n"))
                captured = Captured(head, b"")
                captured.body = await reader.readexactly(int(captured.header("Content-Length")))
                self.requests.append(captured)
                keep_open = await self.replies.pop(0)(captured, writer)
                await writer.drain()
                if not keep_open:
                    return
        finally:
            writer.close()


def respond(raw: bytes, keep_open: bool = True) -> Reply:
    async def reply(_: Captured, writer: asyncio.StreamWriter) -> bool:
        writer.write(raw)
        return keep_open

    return reply


def hang() -> Reply:
    async def reply(_: Captured, __: asyncio.StreamWriter) -> bool:
        await asyncio.sleep(30)
        return False

    return reply


Scenario = Callable[[AsyncSqsClient], Awaitable[None]]
CREDENTIALS = Credentials("AKIDTEST", "secret")


def run(
    replies: list[Reply],
    scenario: Scenario,
    credentials: Credentials = CREDENTIALS,
    tls: ssl.SSLContext | None = None,
    **options: Any,
) -> ScriptedServer:
    """Run `scenario` with a client (region eu-west-1) talking to a ScriptedServer (over TLS with `tls`);
    return the server."""

    async def main() -> ScriptedServer:
        scripted = ScriptedServer(replies)
        server = await asyncio.start_server(scripted.handle, "127.0.0.1", 0, ssl=tls)
        port = server.sockets[0].getsockname()[1]
        scheme = "https" if tls else "http"
        client = AsyncSqsClient(f"{scheme}://127.0.0.1:{port}", "eu-west-1", credentials, **options)
        try:
            await scenario(client)
        finally:
            await client.aclose()
            server.close()
        return scripted

    return asyncio.run(main())


async def send_once(client: AsyncSqsClient) -> None:
    assert (await client.send_message_batch("q", ENTRIES))["Successful"]


def queued_bodies(sqs: Any, queue_url: str) -> list[str]:
    """Every message body now in the queue (received with boto3, so hidden for the queue's timeout)."""
    found: list[str] = []
    while messages := sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", []):
        found += [message["Body"] for message in messages]
    return found


# --- Against fauxqs: the real protocol ---


def test_send_message_batch_delivers_to_fauxqs(settings: Settings, sqs: Any) -> None:
    bodies = [orjson.dumps({"job_id": str(uuid.uuid4())}).decode() for _ in range(10)]

    async def send() -> dict[str, Any]:
        client = async_sqs_client(settings, sqs)
        try:
            return await client.send_message_batch(
                settings.QUEUE_URL_LOW, [{"Id": str(i), "MessageBody": b} for i, b in enumerate(bodies)]
            )
        finally:
            await client.aclose()

    response = asyncio.run(send())
    assert sorted(entry["Id"] for entry in response["Successful"]) == sorted(str(i) for i in range(10))
    assert response.get("Failed", []) == []
    assert sorted(queued_bodies(sqs, settings.QUEUE_URL_LOW)) == sorted(bodies)


def test_unknown_queue_is_an_sqs_error_naming_the_code(settings: Settings, sqs: Any) -> None:
    async def send() -> None:
        client = async_sqs_client(settings, sqs)
        try:
            await client.send_message_batch(settings.QUEUE_URL_LOW + "-missing", ENTRIES)
        finally:
            await client.aclose()

    with pytest.raises(SqsError) as raised:
        asyncio.run(send())
    assert raised.value.status == 400
    assert "NonExistentQueue" in raised.value.code or "QueueDoesNotExist" in raised.value.code
    assert not raised.value.retryable


def test_local_endpoint_uses_the_boto_clients_endpoint() -> None:
    settings = Settings(SQS_ENDPOINT_URL="http://127.0.0.1:9")
    client = async_sqs_client(settings, sqs_client(settings))
    assert client._endpoint.url == "http://127.0.0.1:9/"  # pyright: ignore[reportPrivateUsage]


def test_without_credentials_in_the_cloud_the_error_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    ):
        monkeypatch.delenv(name, raising=False)
    for name in ("AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.setenv(name, "/nonexistent")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # never ask an instance metadata endpoint here
    settings = Settings()
    with pytest.raises(RuntimeError, match=r"no AWS credentials found for SQS .* set SQS_ENDPOINT_URL"):
        async_sqs_client(settings, sqs_client(settings))


# --- The wire: signature, framing, retries ---


def test_the_signed_request_is_the_request_sent() -> None:
    sent = run([respond(ok())], send_once).requests[0]
    assert sent.head[0] == b"POST / HTTP/1.1"
    assert sent.header("X-Amz-Target") == "AmazonSQS.SendMessageBatch"
    assert sent.header("Content-Type") == "application/x-amz-json-1.0"
    assert orjson.loads(sent.body) == {"QueueUrl": "q", "Entries": ENTRIES}
    # Recompute the signature from what arrived: it matches only if the Host, target, date and body the
    # server saw are exactly the ones that were signed.
    names = ("Host", "Content-Type", "X-Amz-Target", "X-Amz-Date")
    arrived = AWSRequest(
        method="POST",
        url=f"http://{sent.header('Host')}/",
        data=sent.body,
        headers={name: sent.header(name) for name in names},
    )
    arrived.context["timestamp"] = sent.header("X-Amz-Date")
    signer = SigV4Auth(CREDENTIALS, "sqs", "eu-west-1")
    signature = signer.signature(signer.string_to_sign(arrived, signer.canonical_request(arrived)), arrived)
    assert sent.header("Authorization") == (
        f"AWS4-HMAC-SHA256 Credential=AKIDTEST/{signer.credential_scope(arrived)},"
        f" SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature={signature}"
    )


def test_session_token_is_sent_and_signed() -> None:
    sent = run([respond(ok())], send_once, credentials=Credentials("AKID", "s", "the-token")).requests[0]
    assert sent.header("X-Amz-Security-Token") == "the-token"
    assert "x-amz-security-token" in sent.header("Authorization")


def test_keep_alive_reuses_one_connection() -> None:
    async def three_calls(client: AsyncSqsClient) -> None:
        for _ in range(3):
            await send_once(client)

    scripted = run([respond(ok())] * 3, three_calls)
    assert scripted.connections == 1
    assert len(scripted.requests) == 3


def test_a_closed_idle_connection_is_replaced_without_an_error() -> None:
    async def call_after_idle(client: AsyncSqsClient) -> None:
        await send_once(client)
        await asyncio.sleep(0.05)  # the server has closed the connection meanwhile
        await send_once(client)

    # The first reply omits "Connection: close" but the server hangs up anyway, as idle timeouts do.
    scripted = run([respond(ok(), keep_open=False), respond(ok())], call_after_idle, max_attempts=1)
    assert scripted.connections == 2


def test_a_response_sent_on_an_idle_connection_is_not_taken_for_the_next_answer() -> None:
    timeout_notice = b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"

    async def answer_then_time_out_the_idle_connection(_: Captured, writer: asyncio.StreamWriter) -> bool:
        writer.write(ok())
        await writer.drain()
        await asyncio.sleep(0.02)
        writer.write(timeout_notice)  # as load balancers do before closing an idle keep-alive connection
        return False

    async def call_after_idle(client: AsyncSqsClient) -> None:
        await send_once(client)
        await asyncio.sleep(0.1)
        await send_once(client)

    scripted = run([answer_then_time_out_the_idle_connection, respond(ok())], call_after_idle, max_attempts=1)
    assert (scripted.connections, len(scripted.requests)) == (2, 2)


def test_connection_close_and_chunked_responses_are_read() -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"%x\r\n" % 10
        + OK_BODY[:10]
        + b"\r\n"
        + b"%x;ext=1\r\n" % (len(OK_BODY) - 10)
        + OK_BODY[10:]
        + b"\r\n0\r\n\r\n"
    )

    async def two_calls(client: AsyncSqsClient) -> None:
        assert (await client.send_message_batch("q", ENTRIES))["Successful"][0]["Id"] == "1"
        assert (await client.send_message_batch("q", ENTRIES))["Successful"][0]["Id"] == "1"

    closing = respond(ok(extra=b"Connection: close\r\n"), keep_open=False)
    scripted = run([closing, respond(chunked)], two_calls, max_attempts=1)
    assert scripted.connections == 2


def test_server_errors_and_throttling_are_retried() -> None:
    unavailable = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 2\r\n\r\n{}"
    throttled_body = b'{"__type":"com.amazonaws.sqs#RequestThrottled","message":"slow down"}'
    throttled = b"HTTP/1.1 400 Bad Request\r\nContent-Length: %d\r\n\r\n" % len(throttled_body) + throttled_body

    scripted = run([respond(unavailable), respond(throttled), respond(ok())], send_once, max_attempts=3)
    assert len(scripted.requests) == 3


def test_client_errors_are_raised_at_once_with_code_and_message() -> None:
    body = b'{"__type":"com.amazonaws.sqs#InvalidParameterValue","message":"Entries too long"}'
    invalid = b"HTTP/1.1 400 Bad Request\r\nContent-Length: %d\r\n\r\n" % len(body) + body

    async def rejected(client: AsyncSqsClient) -> None:
        with pytest.raises(SqsError, match=r"InvalidParameterValue \(HTTP 400\): Entries too long"):
            await client.send_message_batch("q", ENTRIES)

    scripted = run([respond(invalid), respond(ok())], rejected, max_attempts=3)
    assert len(scripted.requests) == 1


def test_retries_give_up_after_max_attempts() -> None:
    unavailable = b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n"

    async def failing(client: AsyncSqsClient) -> None:
        with pytest.raises(SqsError) as raised:
            await client.send_message_batch("q", ENTRIES)
        assert raised.value.status == 500
        assert raised.value.retryable

    scripted = run([respond(unavailable)] * 2, failing, max_attempts=2)
    assert len(scripted.requests) == 2


def test_a_hung_server_times_out_and_the_connection_is_not_reused() -> None:
    async def timeout_then_success(client: AsyncSqsClient) -> None:
        with pytest.raises(TimeoutError):
            await client.send_message_batch("q", ENTRIES)
        await send_once(client)

    scripted = run([hang(), respond(ok())], timeout_then_success, max_attempts=1, timeout_seconds=0.2)
    assert scripted.connections == 2


def test_garbage_is_a_protocol_error() -> None:
    async def garbled(client: AsyncSqsClient) -> None:
        with pytest.raises(ProtocolError, match="status line"):
            await client.send_message_batch("q", ENTRIES)

    run([respond(b"SSH-2.0-OpenSSH\r\n\r\n", keep_open=False)], garbled, max_attempts=1)


@pytest.mark.parametrize("url", ["ftp://example.com", "http://", "sqs.eu-west-1.amazonaws.com"])
def test_endpoint_must_be_an_http_url(url: str) -> None:
    with pytest.raises(ValueError, match="SQS endpoint must be an http"):
        AsyncSqsClient(url, "eu-west-1", Credentials("a", "b"))


def test_expiring_credentials_are_refreshed_off_the_event_loop() -> None:
    refreshed_on: list[str] = []

    def refresh() -> dict[str, str]:
        refreshed_on.append(threading.current_thread().name)
        expiry = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)
        return {"access_key": "AKIDNEW", "secret_key": "s", "token": "t", "expiry_time": expiry.isoformat()}

    soon = (datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=30)).isoformat()
    credentials = RefreshableCredentials.create_from_metadata(
        {"access_key": "AKIDOLD", "secret_key": "s", "token": "t", "expiry_time": soon}, refresh, "test"
    )

    sent = run([respond(ok())], send_once, credentials=credentials).requests[0]
    assert refreshed_on and refreshed_on[0] != threading.main_thread().name
    assert "Credential=AKIDNEW/" in sent.header("Authorization")


# --- The blocking facade the worker uses ---


def test_blocking_client_receives_changes_visibility_and_deletes(settings: Settings, sqs: Any) -> None:
    client = blocking_sqs_client(settings)
    try:
        sqs.send_message(QueueUrl=settings.QUEUE_URL_HIGH, MessageBody="one")
        received = client.receive_message(
            QueueUrl=settings.QUEUE_URL_HIGH,
            MaxNumberOfMessages=10,
            VisibilityTimeout=30,
            MessageSystemAttributeNames=["ApproximateReceiveCount"],
        )["Messages"]
        assert [(m["Body"], m["Attributes"]["ApproximateReceiveCount"]) for m in received] == [("one", "1")]
        handle = received[0]["ReceiptHandle"]
        client.change_message_visibility(QueueUrl=settings.QUEUE_URL_HIGH, ReceiptHandle=handle, VisibilityTimeout=0)
        again = client.receive_message(QueueUrl=settings.QUEUE_URL_HIGH, VisibilityTimeout=30)["Messages"]
        assert [m["Body"] for m in again] == ["one"]  # visible again at once
        entries = [{"Id": "0", "ReceiptHandle": again[0]["ReceiptHandle"], "VisibilityTimeout": 60}]
        assert client.change_message_visibility_batch(QueueUrl=settings.QUEUE_URL_HIGH, Entries=entries)["Successful"]
        deleted = client.delete_message_batch(
            QueueUrl=settings.QUEUE_URL_HIGH, Entries=[{"Id": "0", "ReceiptHandle": again[0]["ReceiptHandle"]}]
        )
        assert [entry["Id"] for entry in deleted["Successful"]] == ["0"]
        attributes = sqs.get_queue_attributes(
            QueueUrl=settings.QUEUE_URL_HIGH,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        assert attributes == {"ApproximateNumberOfMessages": "0", "ApproximateNumberOfMessagesNotVisible": "0"}
    finally:
        client.close()
        client.close()  # idempotent: the worker's entry point and a test fixture may both close it


def test_blocking_long_poll_outlives_the_default_timeout(settings: Settings, sqs: Any) -> None:
    client = BlockingSqsClient(async_sqs_client(settings, sqs))
    client._client._timeout = 0.5  # pyright: ignore[reportPrivateUsage]
    try:
        started = time.monotonic()
        empty = client.receive_message(QueueUrl=settings.QUEUE_URL_LOW, WaitTimeSeconds=1)
        assert empty.get("Messages", []) == []
        assert time.monotonic() - started >= 0.9  # it really waited, and was not cut off at 0.5 s
    finally:
        client.close()


def test_closing_the_blocking_client_fails_calls_in_flight_and_refuses_new_ones() -> None:
    listener = socket.create_server(("127.0.0.1", 0))  # accepts, never answers
    port = listener.getsockname()[1]
    client = BlockingSqsClient(AsyncSqsClient(f"http://127.0.0.1:{port}", "us-east-1", CREDENTIALS))
    outcome: list[BaseException] = []

    def stuck_call() -> None:
        try:
            client.call("ReceiveMessage", {"QueueUrl": "q"}, timeout_seconds=30)
        except BaseException as exc:
            outcome.append(exc)

    caller = threading.Thread(target=stuck_call)
    try:
        caller.start()
        time.sleep(0.2)
        client.close()
        caller.join(timeout=5)
        assert not caller.is_alive(), "close() left a caller blocked"
        assert [type(exc) for exc in outcome] == [concurrent.futures.CancelledError]
        with pytest.raises(RuntimeError, match="SQS client is closed; DeleteMessageBatch was not sent"):
            client.delete_message_batch(QueueUrl="q", Entries=[])
        client.close()  # idempotent
    finally:
        listener.close()


def test_blocking_client_serves_threads_at_once(settings: Settings, sqs: Any) -> None:
    client = blocking_sqs_client(settings)
    errors: list[BaseException] = []

    def send(index: int) -> None:
        try:
            client.call(
                "SendMessageBatch",
                {"QueueUrl": settings.QUEUE_URL_LOW, "Entries": [{"Id": "0", "MessageBody": f"t{index}"}]},
            )
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(index,)) for index in range(8)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=10)
    finally:
        client.close()
    assert errors == []
    assert sorted(queued_bodies(sqs, settings.QUEUE_URL_LOW)) == sorted(f"t{index}" for index in range(8))


# --- The outbox relay on top of it: nothing accepted is lost when SQS fails ---


def _outboxed_jobs(settings: Settings, count: int) -> list[str]:
    """Commit `count` jobs with their outbox rows, as POST /jobs does; returns their ids."""

    async def insert() -> list[str]:
        async with await AsyncConnection[DictRow].connect(
            conninfo(settings), autocommit=True, row_factory=dict_row, password=connection_password(settings)
        ) as conn:
            rows = await repository.insert_jobs(
                conn,
                [
                    repository.job_values(
                        "relay-test",
                        {
                            "type": "data.csv_summary",
                            "priority": "low",
                            "params": {"csv": "a\n1"},
                            "input_file_id": None,
                        },
                        "f",
                        None,
                        None,
                    )
                    for _ in range(count)
                ],
            )
        return [str(row["id"]) for row in rows]

    return asyncio.run(insert())


async def relay_once(settings: Settings, client: AsyncSqsClient) -> int:
    """One relay round through `client` (closed afterwards) with a pool of its own."""
    pool = async_pool(settings)
    await pool.open()
    try:
        return await OutboxRelay(pool, client, settings).relay_once()
    finally:
        await client.aclose()
        await pool.close()


def _outbox_ids(db: psycopg.Connection[DictRow], job_ids: list[str]) -> set[str]:
    rows = db.execute("SELECT job_id FROM outbox WHERE job_id = ANY(%s::uuid[])", (job_ids,)).fetchall()
    return {str(row["job_id"]) for row in rows}


def test_relay_keeps_rows_while_sqs_is_down_and_sends_them_once_it_is_back(
    settings: Settings, db: psycopg.Connection[DictRow], sqs: Any
) -> None:
    job_ids = _outboxed_jobs(settings, 3)
    down = AsyncSqsClient(f"http://127.0.0.1:{free_port()}", "us-east-1", LOCAL_CREDENTIALS, max_attempts=2)
    assert asyncio.run(relay_once(settings, down)) == 0
    assert _outbox_ids(db, job_ids) == set(job_ids)  # nothing deleted, nothing lost
    assert asyncio.run(relay_once(settings, async_sqs_client(settings, sqs))) == 3
    assert _outbox_ids(db, job_ids) == set()
    assert sorted(orjson.loads(body)["job_id"] for body in queued_bodies(sqs, settings.QUEUE_URL_LOW)) == sorted(
        job_ids
    )


def test_relay_deletes_only_the_entries_sqs_accepted(settings: Settings, db: psycopg.Connection[DictRow]) -> None:
    job_ids = _outboxed_jobs(settings, 3)

    async def accept_first_only(request: Captured, writer: asyncio.StreamWriter) -> bool:
        entries = orjson.loads(request.body)["Entries"]
        body = orjson.dumps(
            {
                "Successful": [{"Id": entries[0]["Id"], "MessageId": "m", "MD5OfMessageBody": "x"}],
                "Failed": [
                    {"Id": e["Id"], "SenderFault": False, "Code": "InternalError", "Message": "x"} for e in entries[1:]
                ],
            }
        )
        writer.write(ok(body))
        return True

    async def one_round(client: AsyncSqsClient) -> None:
        assert await relay_once(settings, client) == 1

    run([accept_first_only], one_round)
    assert len(_outbox_ids(db, job_ids)) == 2  # the two SQS failed stay for the next round


def self_signed_certificate(directory: Path, ip: str) -> tuple[Path, Path]:
    """A one-day certificate for `ip` (PEM files cert, key), made with cryptography (a moto dependency)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ip)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def test_https_endpoints_verify_the_certificate_against_aws_ca_bundle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = self_signed_certificate(tmp_path, "127.0.0.1")
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)

    async def refused(client: AsyncSqsClient) -> None:
        with pytest.raises(ssl.SSLCertVerificationError):
            await send_once(client)

    monkeypatch.delenv("AWS_CA_BUNDLE", raising=False)
    run([respond(ok())], refused, tls=server_tls, max_attempts=1)  # self-signed: refused by default
    monkeypatch.setenv("AWS_CA_BUNDLE", str(cert))
    assert len(run([respond(ok())], send_once, tls=server_tls, max_attempts=1).requests) == 1
