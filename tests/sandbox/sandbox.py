"""Run a service's real entry point the way its task definition says, with bubblewrap.

The sandbox is built like the container: a root filesystem holding only the host's system directories, the Python
interpreter, the project's virtualenv at the image's venv path and the image's code at its WORKDIR, read-only when
`readonlyRootFilesystem` is set; each planned mount point is a fresh host directory owned as Fargate would create it;
the process runs as the planned uid/gid for real (root inside bubblewrap, then `setpriv` with every capability
dropped): a user namespace would map root-owned files to the app user and hide exactly the defects this looks for.

The sandbox has its own network namespace (the planned port, no collisions, no leaks). Local PostgreSQL, Redis and
SQS are reached through bridges: a TCP listener inside on the same port, a Unix socket across, `socat` on both sides.
A service with a port is reached through a Unix socket bridged to that port. Other sandboxes a service calls by name
(`http://users:8081`, Service Connect in AWS) are its peers: as in a Service Connect task, the name resolves (here
through /etc/hosts) to a loopback address of its own, where a proxy forwards the port to the peer's socket. Health
checks run inside the sandbox's namespaces with the same user and environment, as ECS runs them inside the container.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.sandbox.image import Directory, Image
from tests.sandbox.task import Container

# Tool -> the Debian package that provides it. util-linux is essential on Debian, but say so when it is missing.
TOOLS: Mapping[str, str] = {"bwrap": "bubblewrap", "socat": "socat", "setpriv": "util-linux", "nsenter": "util-linux"}
REPOSITORY = Path(__file__).resolve().parents[2]
# Where the images keep their virtualenv (`ENV PATH=/opt/venv/bin:$PATH`); the project's venv is mounted there.
IMAGE_VENV = "/opt/venv"
SYSTEM_DIRECTORIES = ("/usr", "/etc")
MERGED_USR_LINKS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
BRIDGE_OUT = "/run/sandbox/out"
BRIDGE_IN = "/run/sandbox/in"
PEERS = "/run/sandbox/peers"
INBOUND_SOCKET = "http.sock"
STOP_GRACE_SECONDS = 10.0


def missing_tools() -> list[str]:
    return sorted({package for tool, package in TOOLS.items() if shutil.which(tool) is None})


def tool(name: str) -> str:
    """Absolute path of a host tool (the sandboxed environment's PATH is the image's, not the host's)."""
    path = shutil.which(name)
    assert path, f"{name} is not installed (Debian package {TOOLS[name]})"
    return path


def ensure_tools() -> str | None:
    """Install the sandbox's tools with apt-get when missing (as root, as CI runs). Returns why the sandbox cannot
    run here, or None when it can."""
    if os.geteuid() != 0:
        return (
            "the task sandbox needs root: it drops to the planned uid/gid for real (setpriv) and creates mounts owned "
            "as Fargate would; a user namespace would map root-owned files to the app user and hide the defects it "
            "looks for. Run `sudo -E uv run --frozen pytest tests/sandbox` (CI runs the suite as root)."
        )
    missing = missing_tools()
    if missing and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        lock = ["-o", "DPkg::Lock::Timeout=300"]
        subprocess.run(["apt-get", *lock, "update", "-qq"], env=env, check=True, capture_output=True, timeout=600)
        subprocess.run(
            ["apt-get", *lock, "install", "-y", "-qq", "--no-install-recommends", *missing],
            env=env, check=True, capture_output=True, timeout=600,
        )  # fmt: skip
    missing = missing_tools()
    if missing:
        return f"missing Debian packages {', '.join(missing)} and no apt-get to install them"
    return None


@dataclass(frozen=True)
class Endpoint:
    """A local service the sandboxed process reaches at 127.0.0.1:`port`, as it is configured to."""

    name: str
    host: str
    port: int


class HostBridges:
    """One `socat` per endpoint: a Unix socket in `directory` (mounted into each sandbox) to the endpoint's TCP port."""

    def __init__(self, directory: Path, endpoints: Sequence[Endpoint]) -> None:
        self.directory = directory
        self.endpoints = tuple(endpoints)
        self.processes: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> HostBridges:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            for endpoint in self.endpoints:
                socket_path = self.directory / f"{endpoint.name}.sock"
                log = self.directory / f"{endpoint.name}.log"
                argv = [
                    *(tool("setpriv"), "--pdeathsig", "TERM", "--"),  # gone with pytest, even if it is killed
                    tool("socat"),
                    f"UNIX-LISTEN:{socket_path},fork,unlink-early",
                    f"TCP:{endpoint.host}:{endpoint.port}",
                ]
                with log.open("wb") as stderr:
                    process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stderr=stderr)
                self.processes.append(process)
                wait_for(socket_path.exists, 10, f"the bridge socket {socket_path}", process, log)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        for process in self.processes:
            stop_process(process, signal.SIGTERM, 5)
        self.processes.clear()


def wait_for(
    condition: Callable[[], bool], timeout: float, what: str, process: subprocess.Popen[bytes], log: Path
) -> None:
    """Wait until `condition()` holds; fail early, with its log, if `process` exits first."""
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            output = log.read_text(errors="replace")[-2000:]
            raise AssertionError(f"{what}: the process exited with {process.returncode} first. {output}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def stop_process(process: subprocess.Popen[bytes], sig: signal.Signals, grace: float) -> None:
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


@dataclass(frozen=True)
class Peer:
    """Another sandbox this one calls as `http://<name>:<port>`."""

    name: str
    port: int
    inbound: Path
    """The peer's inbound directory (`Sandbox.inbound`), which holds the socket bridged to its port."""


def peer_address(index: int) -> str:
    """The loopback address the caller resolves its `index`th peer to: one per peer, so each may use any port."""
    return f"127.255.0.{index + 1}"


@dataclass(frozen=True)
class SandboxSpec:
    """Everything one sandboxed container needs."""

    container: Container
    image: Image
    argv: Sequence[str]
    env: Mapping[str, str]
    mounts: Mapping[str, Path]
    """containerPath -> the fresh host directory behind it."""
    inbound_port: int | None = None
    """Port to expose to the test (and to peers) through a Unix socket."""
    peers: Sequence[Peer] = ()


@dataclass
class RootFilesystem:
    """bwrap arguments for a root built from parts; tracks which directories it created in its tmpfs."""

    args: list[str] = field(default_factory=lambda: ["--tmpfs", "/"])
    created: set[str] = field(default_factory=lambda: {"/"})
    bound: list[str] = field(default_factory=list)

    def parents(self, destination: str) -> None:
        # bwrap would create missing parents 0700 (root only); the image's directories are 0755.
        path = Path(destination)
        for parent in reversed(path.parents):
            name = str(parent)
            if name in self.created or any(name == b or name.startswith(b + "/") for b in self.bound):
                continue
            self.args += ["--perms", "0755", "--dir", name]
            self.created.add(name)

    def bind(self, source: Path | str, destination: str, *, writable: bool = False) -> None:
        self.parents(destination)
        self.args += ["--bind" if writable else "--ro-bind", str(source), destination]
        self.bound.append(destination)

    def directory(self, path: str) -> None:
        self.parents(path)
        if path not in self.created and not self.covered(path):
            self.args += ["--perms", "0755", "--dir", path]
            self.created.add(path)

    def covered(self, path: str) -> bool:
        return any(path == b or path.startswith(b + "/") for b in self.bound)


def interpreter_home() -> Path:
    """The installation the venv's python links to (pyenv, uv, setup-python); it may sit under a 0700 /root."""
    return Path(sys.base_prefix).resolve()


def hosts_file(peers: Sequence[Peer]) -> str:
    """The host's /etc/hosts with a line per peer."""
    lines = [f"{peer_address(index)}\t{peer.name}" for index, peer in enumerate(peers)]
    return "\n".join([Path("/etc/hosts").read_text().rstrip("\n"), "# sandbox peers", *lines]) + "\n"


def root_filesystem(spec: SandboxSpec, bridges: Path, inbound: Path, hosts: Path | None = None) -> list[str]:
    root = RootFilesystem()
    for directory in SYSTEM_DIRECTORIES:
        root.bind(directory, directory)
    for link in MERGED_USR_LINKS:
        if os.path.islink(link):
            root.args += ["--symlink", os.readlink(link), link]
        elif os.path.isdir(link):
            root.bind(link, link)
    root.args += ["--dev", "/dev", "--perms", "1777", "--tmpfs", "/dev/shm", "--proc", "/proc"]  # Docker: /dev/shm 1777
    home = interpreter_home()
    if not root.covered(str(home)):  # at its own path, with 0755 parents: the image's python is everyone's
        root.bind(home, str(home))
    venv_bin = f"{IMAGE_VENV}/bin"
    if venv_bin not in spec.image.env.get("PATH", "").split(":"):
        raise AssertionError(f"{spec.image.dockerfile}: PATH no longer has {venv_bin}; update IMAGE_VENV")
    root.bind(Path(sys.prefix), IMAGE_VENV)
    code = spec.image.code()
    if not code:
        raise AssertionError(f"{spec.image.dockerfile}: copies nothing from this repository to {spec.image.workdir}")
    for relative in code:
        root.bind(REPOSITORY / relative, f"{spec.image.workdir}/{relative}")
    root.directory(spec.image.workdir)
    root.bind(bridges, BRIDGE_OUT)
    root.bind(inbound, BRIDGE_IN, writable=True)
    for peer in spec.peers:  # root-only directories (0700): only the proxies, not the app user, use them
        root.bind(peer.inbound, f"{PEERS}/{peer.name}")
    if hosts is not None:
        root.bind(hosts, "/etc/hosts")
    for container_path, host_directory in spec.mounts.items():
        read_only = next(m.read_only for m in spec.container.mounts if m.container_path == container_path)
        root.bind(host_directory, container_path, writable=not read_only)
    if spec.container.read_only_root:
        root.args += ["--remount-ro", "/"]
    return root.args


def drop_privileges(container: Container) -> list[str]:
    argv = ["/usr/bin/setpriv", f"--reuid={container.uid}", f"--regid={container.gid}", "--clear-groups"]
    if container.drop_all_capabilities:
        argv += ["--bounding-set=-all", "--inh-caps=-all"]
    return [*argv, "--"]


def init_script(
    endpoints: Sequence[Endpoint], inbound_port: int | None, container: Container, peers: Sequence[Peer] = ()
) -> str:
    """Root inside the sandbox: start the bridges, wait until they listen, then become the container's process."""
    lines = ["set -eu"]
    listening: list[tuple[str, int]] = []
    for endpoint in endpoints:
        lines.append(
            f"/usr/bin/socat TCP-LISTEN:{endpoint.port},bind=127.0.0.1,reuseaddr,fork "
            f"UNIX-CONNECT:{BRIDGE_OUT}/{endpoint.name}.sock &"
        )
        listening.append(("127.0.0.1", endpoint.port))
    for index, peer in enumerate(peers):
        address = peer_address(index)
        lines.append(
            f"/usr/bin/socat TCP-LISTEN:{peer.port},bind={address},reuseaddr,fork "
            f"UNIX-CONNECT:{PEERS}/{peer.name}/{INBOUND_SOCKET} &"
        )
        listening.append((address, peer.port))
    if inbound_port is not None:
        lines.append(f"/usr/bin/socat UNIX-LISTEN:{BRIDGE_IN}/{INBOUND_SOCKET},fork TCP:127.0.0.1:{inbound_port} &")
    lines += [
        f"for socket in {' '.join(proc_net_tcp_address(address, port) for address, port in listening)}; do",
        "  tries=0",
        '  until grep -q "^ *[0-9]*: $socket 00000000:0000 0A" /proc/net/tcp; do',
        "    tries=$((tries + 1))",
        '    [ "$tries" -lt 1000 ] || { echo "bridge on $socket never listened" >&2; exit 97; }',
        "    sleep 0.01",
        "  done",
        "done",
        f'exec {shlex.join(drop_privileges(container))} "$@"',
    ]
    return "\n".join(lines)


def proc_net_tcp_address(address: str, port: int) -> str:
    """`address:port` as /proc/net/tcp shows a local socket: the IPv4 address as a little-endian hex word."""
    return f"{int.from_bytes(socket.inet_aton(address), 'little'):08X}:{port:04X}"


class Sandbox:
    """One running container. `with Sandbox(...) as sandbox:` always stops it and everything it started."""

    def __init__(self, spec: SandboxSpec, bridges: HostBridges, scratch: Path) -> None:
        self.spec = spec
        self.bridges = bridges
        self.inbound = scratch / "inbound"
        self.log_path = scratch / "output.log"
        self.hosts_path = scratch / "hosts"
        self.process: subprocess.Popen[bytes] | None = None
        self.sandbox_pid = 0

    @property
    def inbound_socket(self) -> Path:
        return self.inbound / INBOUND_SOCKET

    def __enter__(self) -> Sandbox:
        self.inbound.mkdir(mode=0o700, parents=True)  # root only: the app cannot use it as scratch space
        hosts = None
        if self.spec.peers:
            hosts = self.hosts_path
            hosts.write_text(hosts_file(self.spec.peers))
        init = init_script(self.bridges.endpoints, self.spec.inbound_port, self.spec.container, self.spec.peers)
        read_info, write_info = os.pipe()
        argv = [
            tool("bwrap"), "--die-with-parent", "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
            "--info-fd", str(write_info),
            *root_filesystem(self.spec, self.bridges.directory, self.inbound, hosts),
            "--chdir", self.spec.image.workdir,
            "--", "/bin/sh", "-c", init, "sh", *self.spec.argv,
        ]  # fmt: skip
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                argv, env=dict(self.spec.env), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                pass_fds=(write_info,), start_new_session=True,
            )  # fmt: skip
        os.close(write_info)
        try:
            with os.fdopen(read_info) as info:
                self.sandbox_pid = int(json.loads(info.read() or "{}").get("child-pid", 0))
            if not self.sandbox_pid:
                raise AssertionError(f"{self.label}: bubblewrap did not start. {self.output()}")
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        if self.process is None:
            return
        # The whole session: bwrap, the bridges and the service; the kernel then empties the PID namespace.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=5)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)  # anything that outlived bwrap in its session

    @property
    def label(self) -> str:
        return self.spec.container.label

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def output(self, limit: int = 4000) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return f"[{self.label} output, last {limit} characters]\n{text[-limit:]}"

    def run_inside(self, argv: Sequence[str], timeout: float) -> subprocess.CompletedProcess[str]:
        """Run `argv` in the sandbox's mount and network namespaces, as the container's user, with its environment
        and working directory: how ECS runs a container health check."""
        command = [
            tool("nsenter"), f"--target={self.sandbox_pid}", "--mount", "--net", "--root",
            f"--wdns={self.spec.image.workdir}", "--", *drop_privileges(self.spec.container), *argv,
        ]  # fmt: skip
        try:
            return subprocess.run(
                command, env=dict(self.spec.env), capture_output=True, text=True, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired as expired:
            return subprocess.CompletedProcess(command, 124, str(expired.stdout or ""), f"timed out after {timeout}s")

    def health_check(self) -> subprocess.CompletedProcess[str]:
        check = self.spec.container.health_check
        assert check is not None, f"{self.label}: the plan gives this container no healthCheck"
        return self.run_inside(check.command, check.timeout)

    def wait_healthy(self) -> None:
        """Wait (up to the planned start period) until the planned health check passes; fail at once if the
        service exits, and with the last check's output if it never passes."""
        check = self.spec.container.health_check
        assert check is not None, f"{self.label}: the plan gives this container no healthCheck"
        deadline = time.monotonic() + max(check.start_period, check.interval)
        last = self.health_check()
        pause = 0.125
        while last.returncode != 0:
            if not self.running():
                raise AssertionError(f"{self.label} exited with {self.exit_code()} before its health check passed.\n"
                                     f"{self.output()}")  # fmt: skip
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{self.label}: the planned health check {list(check.command)} still fails after the "
                    f"{check.start_period}s start period: exit {last.returncode}\n{last.stdout}{last.stderr}\n"
                    f"{self.output()}"
                )
            # Each check starts a Python process: back off so the checks do not slow the start they wait for.
            pause = min(pause * 2, 1.0)
            time.sleep(pause)
            last = self.health_check()

    def exit_code(self) -> int | None:
        return None if self.process is None else self.process.poll()


def prepare_directory(path: Path, directory: Directory) -> Path:
    """A fresh directory with exactly this owner and mode (chmod after chown: chown clears set-id bits)."""
    path.mkdir(parents=True)
    os.chown(path, directory.uid, directory.gid)
    path.chmod(directory.mode)
    return path
