"""Run the whole shop locally: five services and the gateway, against the local PostgreSQL, Redis and fauxqs.

    ./platform local --app shop [--port 8080]        (or: uv run python -m services.shop.local)

Everything comes from Pulumi.shop.yaml, so a local run has what a deployment has: each service's port, its
`<CALLEE>_URL` per `calls` entry, `<TARGET>_QUEUE_URL` per `sendsTo`, `QUEUE_URL` for its own `queue` (with a
dead-letter queue and the configured redrive), `EMAIL_FROM` for `email`, its `environment`, and behind the gateway
the routes and throttling of the HTTP API. What AWS provides is replaced by local stand-ins:
- the database (`shop_local` by default) is created if missing, and each service that attaches `database` gets its
  own role and schema (services.shop.common.database.ensure_service_role; the db_roles Lambda's job in AWS);
- every `generatedSecrets` entry (Secrets Manager in AWS) is a file of that many random bytes, base64, under
  .local/ (kept across runs, so issued tokens stay valid), handed over as `<VARIABLE>_FILE`;
- email goes to .local/shop-mail (`EMAIL_SINK_DIR`), SQS is fauxqs, Redis keys start `shop-local:<service>:`.

Then it starts every service (`python -m services.shop.<name>`), waits for each `/ready`, starts the gateway
(services/shop/gateway.py) and runs until Ctrl-C or SIGTERM, or until a process exits on its own; then it stops
them all (SIGTERM, a grace period, SIGKILL), as services/local.py does for the job platform.

Tests, the chaos tests and the load benchmark use the same machinery through `ShopProcesses`:

    with ShopProcesses(database="shop_test_x", redis_prefix="shop-test-x", port=0, service_ports="free",
                       log_dir=tmp_path) as shop:
        httpx.get(f"{shop.url}/products")
        shop.stop_service("payments")      # SIGTERM, grace, SIGKILL
        shop.start_service("payments")     # and wait until it is ready again
        shop.kill_service("orders")        # SIGKILL
        shop.pause_service("products")     # SIGSTOP (a hung task); resume_service sends SIGCONT
"""

from __future__ import annotations

import argparse
import base64
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Literal

import httpx
import orjson
from psycopg.conninfo import make_conninfo

from components.config import ServiceSpec, StackConfig
from services.common.settings import Settings
from services.common.sqs import sqs_client
from services.fauxqs import Fauxqs, free_port
from services.local import STOP_GRACE_SECONDS, ensure_database, stop_processes
from services.shop.common.database import ensure_service_role
from services.shop.gateway import INTEGRATION_TIMEOUT_SECONDS
from services.shop.routes import REPO_ROOT, SHOP_STACK_FILE, load_stack_config

LOCAL_DIR = REPO_ROOT / ".local"
DEFAULT_DATABASE = "shop_local"
DEFAULT_REDIS_PREFIX = "shop-local"
READY_TIMEOUT_SECONDS = 60.0
ADMIN_CONNINFO = make_conninfo(host="127.0.0.1", port=5432, user="postgres", dbname="postgres")
DLQ_RETENTION_SECONDS = 14 * 24 * 3600  # the dead-letter queue keeps its messages 14 days, as in AWS

ServicePorts = Literal["table", "free"] | Mapping[str, int]


class ShopStartError(RuntimeError):
    """A process did not start or did not become ready; the message has the end of its log."""


class ServiceCommandError(RuntimeError):
    """A command run with a service's environment failed; the message has the end of its output."""


@dataclass(frozen=True)
class LocalResources:
    """What the local stand-ins for AWS provide to the services."""

    database: str
    redis_prefix: str
    sqs_endpoint_url: str
    queue_urls: Mapping[str, str]
    """Service name -> URL of the queue it owns (`services.<name>.queue`)."""
    secret_files: Mapping[tuple[str, str], Path]
    """(service, variable) -> the file holding that generated secret."""
    mail_dir: Path


def service_environment(
    config: StackConfig, name: str, ports: Mapping[str, int], resources: LocalResources, log_level: str = "INFO"
) -> dict[str, str]:
    """The variables a service gets locally: what its task definition would carry in AWS, with local stand-ins."""
    spec = config.services[name]
    env = {
        "SERVICE_NAME": name,
        "APP_ENV": "local",
        "LOG_LEVEL": log_level,
        "AWS_REGION": config.region,
        # Per service even without a cache: Redis is shared by every local run and test.
        "REDIS_KEY_PREFIX": f"{resources.redis_prefix}:{name}:",
    }
    if ports.get(name) is not None:
        env["PORT"] = str(ports[name])
    if "database" in spec.attaches:
        env |= {"DB_HOST": "127.0.0.1", "DB_PORT": "5432", "DB_NAME": resources.database}
        env |= {"DB_USER": _identifier(name), "DB_SCHEMA": _identifier(name), "DB_AUTH": "password"}
    for callee in spec.calls:
        env[f"{_variable(callee)}_URL"] = f"http://127.0.0.1:{ports[callee]}"
    if spec.queue is not None or spec.sendsTo:
        env["SQS_ENDPOINT_URL"] = resources.sqs_endpoint_url
    if spec.queue is not None:
        env["QUEUE_URL"] = resources.queue_urls[name]
    for target in spec.sendsTo:
        env[f"{_variable(target)}_QUEUE_URL"] = resources.queue_urls[target]
    for variable, secret in spec.generatedSecrets.items():
        path = resources.secret_files[(name, variable)]
        env[f"{variable}_FILE"] = str(path)
        # The stand-in for the secret's AWSPREVIOUS version, which the platform passes only with keepPrevious.
        if secret.keepPrevious and previous_secret_file(path).exists():
            env[f"{variable}_PREVIOUS_FILE"] = str(previous_secret_file(path))
    if spec.email is not None:
        env |= {"EMAIL_FROM": spec.email.fromAddress, "EMAIL_SINK_DIR": str(resources.mail_dir)}
    return env | spec.environment


def _variable(service: str) -> str:
    """`<CALLEE>_URL`'s prefix, as the Pulumi program names it (__main__.service_environment)."""
    return service.upper().replace("-", "_")


def _identifier(service: str) -> str:
    """The service's PostgreSQL role and schema (a service name may have '-', an identifier here may not)."""
    return service.replace("-", "_")


def ensure_secret_file(path: Path, size: int) -> Path:
    """A file of `size` random bytes, base64, readable by its owner only; an existing one is kept."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(base64.b64encode(os.urandom(size)).decode() + "\n")
    return path


def previous_secret_file(path: Path) -> Path:
    return path.with_name(path.name + ".previous")


def rotate_secret_file(path: Path, size: int) -> Path:
    """Local rotation, as `pulumi up --replace` of the generated secret is in AWS: the current value becomes the
    previous one (`<path>.previous`, retiring the one before it) and a new value is written. Returns `path`."""
    if path.exists():
        path.replace(previous_secret_file(path))  # atomic: a previous file is never half-written
    return ensure_secret_file(path, size)


def secret_files(config: StackConfig, local_dir: Path, *, rotate: bool = False) -> dict[tuple[str, str], Path]:
    """Each generated secret's file, created if missing (`<local_dir>/shop-<service>-<variable>.key`); `rotate`:
    each rotated first (`./platform local --app shop --rotate-secrets`)."""
    make = rotate_secret_file if rotate else ensure_secret_file
    return {
        (name, variable): make(local_dir / f"shop-{name}-{variable.lower()}.key", secret.bytes)
        for name, spec in config.services.items()
        for variable, secret in spec.generatedSecrets.items()
    }


def ensure_service_queues(config: StackConfig, endpoint_url: str, prefix: str) -> dict[str, str]:
    """Each `queue` as `<prefix>-<service>` with its dead-letter queue `<prefix>-<service>-dlq` and the configured
    redrive, visibility timeout and retention; service name -> queue URL."""
    client = sqs_client(Settings(SQS_ENDPOINT_URL=endpoint_url, AWS_REGION=config.region))
    urls: dict[str, str] = {}
    for name, spec in config.services.items():
        if spec.queue is None:
            continue
        dlq_url = client.create_queue(
            QueueName=f"{prefix}-{name}-dlq", Attributes={"MessageRetentionPeriod": str(DLQ_RETENTION_SECONDS)}
        )["QueueUrl"]
        dlq_arn = client.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        redrive = orjson.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(spec.queue.maxReceives)})
        urls[name] = client.create_queue(
            QueueName=f"{prefix}-{name}",
            Attributes={
                "RedrivePolicy": redrive.decode(),
                "VisibilityTimeout": str(spec.queue.visibilityTimeoutSeconds),
                "MessageRetentionPeriod": str(spec.queue.retentionDays * 24 * 3600),
            },
        )["QueueUrl"]
    return urls


def ensure_database_roles(config: StackConfig, database: str) -> None:
    """The database, and a role owning a schema of its name for each service that attaches `database`."""
    ensure_database(Settings(DB_NAME=database))
    for name, spec in config.services.items():
        if "database" in spec.attaches:
            ensure_service_role(ADMIN_CONNINFO, database, _identifier(name), _identifier(name))


def resolve_ports(config: StackConfig, service_ports: ServicePorts) -> dict[str, int]:
    """Each service's port: the table's (`services.<name>.port`), free ones, or given ones."""
    names = [name for name, spec in config.services.items() if spec.port is not None]
    if service_ports == "table":
        return {name: _port(config.services[name]) for name in names}
    if service_ports == "free":
        return {name: free_port() for name in names}
    if not isinstance(service_ports, Mapping):
        raise ValueError(f"service_ports {service_ports!r}; allowed: 'table', 'free' or a mapping of name -> port")
    missing = sorted(set(names) - set(service_ports))
    unknown = sorted(set(service_ports) - set(names))
    if missing or unknown:
        raise ValueError(
            f"service_ports: missing {missing or 'none'}, unknown {unknown or 'none'}; allowed: exactly the services "
            f"with a port ({', '.join(names)})"
        )
    return dict(service_ports)


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: TIME_WAIT is no conflict
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _port(spec: ServiceSpec) -> int:
    assert spec.port is not None
    return spec.port


class ShopProcesses:
    """The whole shop as child processes; `with ShopProcesses(...) as shop:` starts it and always stops it."""

    def __init__(
        self,
        *,
        database: str = DEFAULT_DATABASE,
        redis_prefix: str = DEFAULT_REDIS_PREFIX,
        port: int = 8080,
        service_ports: ServicePorts = "table",
        stack_file: Path = SHOP_STACK_FILE,
        local_dir: Path = LOCAL_DIR,
        log_dir: Path | None = None,
        service_env: Mapping[str, Mapping[str, str]] | None = None,
        sqs_endpoint_url: str | None = None,
        throttling: bool = True,
        integration_timeout: float = INTEGRATION_TIMEOUT_SECONDS,
        log_level: str = "INFO",
        ready_timeout: float = READY_TIMEOUT_SECONDS,
        stop_grace: float = STOP_GRACE_SECONDS,
        rotate_secrets: bool = False,
    ) -> None:
        """
        - `port`: the gateway's (0: a free one); `service_ports`: "table", "free" or name -> port.
        - `log_dir`: each process writes `<name>.log` there; None: they inherit this process's stdout/stderr.
        - `service_env`: extra variables per service (name -> variables), on top of the stack file's.
        - `sqs_endpoint_url`: an SQS endpoint already running; None starts fauxqs for this run.
        - `throttling`: False turns the gateway's HTTP API throttling off (measure the services, not the limits).
        - `integration_timeout`: the gateway's 504 after this many seconds (API Gateway: 30, the most allowed).
        - `rotate_secrets`: rotate every generated secret before starting (the previous value stays published).
        """
        self.config = load_stack_config(stack_file)
        if not self.config.services:
            raise ValueError(f"{stack_file}: no services; allowed: a stack file with `services` (Pulumi.shop.yaml)")
        unknown = sorted(set(service_env or {}) - set(self.config.services))
        if unknown:
            raise ValueError(
                f"service_env: {', '.join(unknown)} not in the stack file; allowed: {', '.join(self.config.services)}"
            )
        self.database = database
        self.redis_prefix = redis_prefix
        self.ports = resolve_ports(self.config, service_ports)
        self.gateway_port = port or free_port()
        self.url = f"http://127.0.0.1:{self.gateway_port}"
        self._stack_file = stack_file
        self._local_dir = local_dir
        self._log_dir = log_dir
        self._service_env = {name: dict(env) for name, env in (service_env or {}).items()}
        self._sqs_endpoint_url = sqs_endpoint_url
        self._throttling = throttling
        self._integration_timeout = integration_timeout
        self._log_level = log_level
        self._ready_timeout = ready_timeout
        self._stop_grace = stop_grace
        self._rotate_secrets = rotate_secrets
        self._fauxqs: Fauxqs | None = None
        self._resources: LocalResources | None = None
        self._processes: dict[str, subprocess.Popen[bytes]] = {}
        self._paused: set[str] = set()
        self._logs: dict[str, IO[bytes]] = {}

    @property
    def services(self) -> tuple[str, ...]:
        return tuple(self.config.services)

    def service_url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[self._known(name)]}"

    def environment(self, name: str) -> dict[str, str]:
        """The variables `name` runs with (after `start()`)."""
        if self._resources is None:
            raise RuntimeError("the shop is not started: the environment needs its queues and secret files")
        env = service_environment(self.config, self._known(name), self.ports, self._resources, self._log_level)
        return env | self._service_env.get(name, {})

    # --- The whole shop ---

    def start(self) -> None:
        self._check_ports_free()
        try:
            self._resources = self._prepare()
            for name in self.services:
                self._spawn(name)
            for name in self.services:
                self._wait_ready(name)
            self._spawn_gateway()
            self._wait_gateway()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop the gateway, then every service (SIGTERM, grace, SIGKILL), then fauxqs."""
        gateway = self._processes.pop("gateway", None)
        if gateway is not None:
            stop_processes([gateway], self._stop_grace)
        for name in list(self._paused):
            if self._processes[name].poll() is None:
                self.resume_service(name)
        self._paused.clear()
        stop_processes(list(self._processes.values()), self._stop_grace)
        self._processes.clear()
        for log in self._logs.values():
            log.close()
        self._logs.clear()
        if self._fauxqs is not None:
            self._fauxqs.stop()
            self._fauxqs = None

    def exited(self) -> dict[str, int]:
        """Processes that ended on their own: name -> exit code."""
        return {name: code for name, process in self._processes.items() if (code := process.poll()) is not None}

    def __enter__(self) -> ShopProcesses:
        if not self._processes:
            self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # --- One service (chaos) ---

    def start_service(self, name: str) -> None:
        """Start a stopped or killed service and wait until it is ready."""
        process = self._processes.get(self._known(name))
        if process is not None and process.poll() is None:
            raise RuntimeError(f"{name} is already running (pid {process.pid}); stop or kill it first")
        self._spawn(name)
        self._wait_ready(name)

    def stop_service(self, name: str) -> None:
        """Stop a service as ECS does: SIGTERM, the grace period, then SIGKILL."""
        process = self._running(name)
        if name in self._paused:
            self.resume_service(name)  # a stopped process would sit out the whole grace period
        stop_processes([process], self._stop_grace)

    def kill_service(self, name: str) -> None:
        """SIGKILL a service (a crash: no graceful shutdown)."""
        process = self._running(name)
        process.kill()
        process.wait(timeout=10)
        self._paused.discard(name)

    def pause_service(self, name: str) -> None:
        """SIGSTOP a service: it keeps its connections and port but answers nothing (a hung task)."""
        os.kill(self._running(name).pid, signal.SIGSTOP)
        self._paused.add(name)

    def resume_service(self, name: str) -> None:
        os.kill(self._running(name).pid, signal.SIGCONT)
        self._paused.discard(name)

    def restart_service(self, name: str) -> None:
        self.stop_service(name)
        self.start_service(name)

    def run_module(self, name: str, module: str, *arguments: str) -> subprocess.CompletedProcess[str]:
        """Run `python -m <module> <arguments>` with service `name`'s environment (its tools: seeding, ...);
        ServiceCommandError, with the end of its output, when it fails."""
        argv = [sys.executable, "-m", module, *arguments]
        env = {**os.environ, **self.environment(name)}
        # Fixed argv: this interpreter and one of our modules.
        done = subprocess.run(argv, env=env, cwd=REPO_ROOT, capture_output=True, text=True, check=False)  # noqa: S603
        if done.returncode != 0:
            output = (done.stdout + done.stderr).strip().splitlines()[-20:]
            raise ServiceCommandError(f"{' '.join(argv[1:])} exited with {done.returncode}:\n" + "\n".join(output))
        return done

    def seed_products(self, count: int) -> None:
        """A deterministic catalog of `count` products (services/shop/products/seed.py; seeding again adds none)."""
        self.run_module("products", "services.shop.products.seed", "--count", str(count))

    def pid(self, name: str) -> int:
        return self._running(name).pid

    def pids(self) -> dict[str, int]:
        """Every running process by name: the services and "gateway"."""
        return {name: process.pid for name, process in self._processes.items() if process.poll() is None}

    def log_file(self, name: str) -> Path | None:
        """Where `name` ("gateway" or a service) writes its log, with `log_dir`."""
        return None if self._log_dir is None else self._log_dir / f"{name}.log"

    # --- Internals ---

    def _known(self, name: str) -> str:
        if name not in self.config.services:
            raise ValueError(f"{name!r} is not a service of the shop; allowed: {', '.join(self.services)}")
        return name

    def _running(self, name: str) -> subprocess.Popen[bytes]:
        process = self._processes.get(self._known(name))
        if process is None or process.poll() is not None:
            raise RuntimeError(f"{name} is not running")
        return process

    def _check_ports_free(self) -> None:
        """A port held by another process would answer our readiness checks in place of the service."""
        taken = [
            f"{port} ({name})"
            for name, port in [*self.ports.items(), ("gateway", self.gateway_port)]
            if not _port_is_free(port)
        ]
        if taken:
            raise ShopStartError(
                f"port {', '.join(taken)} already in use; stop what listens there, or use other ports "
                "(ShopProcesses(port=0, service_ports='free'), or --port for the gateway)"
            )

    def _prepare(self) -> LocalResources:
        ensure_database_roles(self.config, self.database)
        endpoint = self._sqs_endpoint_url
        if endpoint is None:
            self._fauxqs = Fauxqs()
            self._fauxqs.start()
            endpoint = self._fauxqs.endpoint_url
        mail_dir = self._local_dir / "shop-mail"
        mail_dir.mkdir(parents=True, exist_ok=True)
        return LocalResources(
            database=self.database,
            redis_prefix=self.redis_prefix,
            sqs_endpoint_url=endpoint,
            queue_urls=ensure_service_queues(self.config, endpoint, self.database.replace("_", "-")),
            secret_files=secret_files(self.config, self._local_dir, rotate=self._rotate_secrets),
            mail_dir=mail_dir,
        )

    def _spawn(self, name: str) -> None:
        self._launch(name, [sys.executable, "-m", f"services.shop.{name}"], self.environment(name))

    def _spawn_gateway(self) -> None:
        argv = [sys.executable, "-m", "services.shop.gateway", "--port", str(self.gateway_port)]
        argv += ["--stack-file", str(self._stack_file), "--log-level", self._log_level]
        argv += ["--integration-timeout", str(self._integration_timeout)]
        for name, spec in self.config.services.items():
            if spec.routes:
                argv += ["--upstream", f"{name}={self.service_url(name)}"]
        if not self._throttling:
            argv.append("--no-throttling")
        self._launch("gateway", argv, {})

    def _launch(self, name: str, argv: list[str], env: Mapping[str, str]) -> None:
        output: IO[bytes] | None = None
        if self._log_dir is not None:
            self._log_dir.mkdir(parents=True, exist_ok=True)
            previous = self._logs.pop(name, None)
            if previous is not None:
                previous.close()
            output = self._logs[name] = (self._log_dir / f"{name}.log").open("ab")
        # Fixed argv: this interpreter and our own modules. Own sessions: a Ctrl-C reaches only the runner,
        # which then stops the children in order.
        self._processes[name] = subprocess.Popen(  # noqa: S603
            argv,
            env={**os.environ, **env},
            cwd=REPO_ROOT,
            stdout=output,
            stderr=subprocess.STDOUT if output is not None else None,
            start_new_session=True,
        )

    def _wait_ready(self, name: str) -> None:
        self._wait_http(name, f"{self.service_url(name)}/ready", ready=lambda status: status == 200)

    def _wait_gateway(self) -> None:
        # No route is the HTTP API's 404: any answer at all means the gateway serves.
        self._wait_http("gateway", f"{self.url}/", ready=lambda status: status > 0)

    def _wait_http(self, name: str, url: str, ready: Callable[[int], bool]) -> None:
        deadline = time.monotonic() + self._ready_timeout
        last = "no answer yet"
        with httpx.Client(timeout=2.0) as client:
            while time.monotonic() < deadline:
                code = self._processes[name].poll()
                if code is not None:
                    raise ShopStartError(f"{name} exited with {code} while starting{self._log_tail(name)}")
                try:
                    response = client.get(url)
                    if ready(response.status_code):
                        return
                    last = f"{response.status_code} {response.text[:300]}"
                except httpx.TransportError as error:
                    last = f"{type(error).__name__}: {error}"
                time.sleep(0.1)
        raise ShopStartError(
            f"{name} not ready at {url} after {self._ready_timeout:g}s (last: {last}){self._log_tail(name)}"
        )

    def _log_tail(self, name: str, lines: int = 30) -> str:
        path = self.log_file(name)
        if path is None or not path.exists():
            return ""
        tail = path.read_text(errors="replace").splitlines()[-lines:]
        return f"; end of {path}:\n" + "\n".join(tail)


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=8080, help="the gateway's port on 127.0.0.1 (default 8080)")
    parser.add_argument("--database", default=DEFAULT_DATABASE, help=f"database name (default {DEFAULT_DATABASE})")
    parser.add_argument(
        "--stack-file", type=Path, default=SHOP_STACK_FILE, help="stack file (default Pulumi.shop.yaml)"
    )
    parser.add_argument(
        "--products", type=int, default=1000, help="products to seed the catalog with, 0 for none (default 1000)"
    )
    parser.add_argument("--no-throttling", action="store_true", help="turn the HTTP API's throttling off")
    parser.add_argument(
        "--rotate-secrets",
        action="store_true",
        help="rotate the generated secrets (the users signing key) first; the previous key stays published",
    )
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    arguments = parser.parse_args(argv)
    if not 1 <= arguments.port <= 65535:
        parser.error(f"--port {arguments.port}; allowed: 1 to 65535")
    if arguments.products < 0:
        parser.error(f"--products {arguments.products}; allowed: 0 or more")
    return arguments


def main(argv: list[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        shop = ShopProcesses(
            database=arguments.database,
            port=arguments.port,
            stack_file=arguments.stack_file,
            throttling=not arguments.no_throttling,
            log_level=arguments.log_level,
            rotate_secrets=arguments.rotate_secrets,
        )
        shop.start()
    except (ValueError, OSError, ShopStartError) as error:  # ConfigError is a ValueError
        print(f"shop: {error}", file=sys.stderr)  # noqa: T201
        return 2
    with shop:
        if arguments.products and "products" in shop.services:
            try:
                shop.seed_products(arguments.products)
            except ServiceCommandError as error:
                print(f"shop: seeding the catalog failed: {error}", file=sys.stderr)  # noqa: T201
                return 1
        services = ", ".join(f"{name} :{port}" for name, port in shop.ports.items())
        banner = f"Shop on {shop.url} ({services}); mail in {LOCAL_DIR / 'shop-mail'}. Ctrl-C stops everything."
        print(banner, flush=True)  # noqa: T201
        while not stop.is_set():
            exited = shop.exited()
            if exited:
                print(f"{', '.join(exited)} exited on its own; stopping everything", file=sys.stderr)  # noqa: T201
                return 1
            stop.wait(0.5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
