"""Local services for tests, benchmarks and the demo: an anvil node and a redis-server on
free loopback ports, each a child process that stops with its owner.

Nothing here is needed to run against a public network; operators bring their own node
and Redis.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from computenet.errors import ComputenetError

ROOT = Path(__file__).resolve().parent.parent
# npm's `.bin/anvil` is a node shim; the platform package holds the real binary.
ANVIL_NPM = ROOT / "node_modules" / "@foundry-rs" / "anvil-linux-amd64" / "bin" / "anvil"

T = TypeVar("T")


class ServiceError(ComputenetError):
    """A local service is missing or did not start."""


def free_port() -> int:
    """A loopback TCP port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(condition: Callable[[], T], timeout: float, what: str, interval: float = 0.02) -> T:
    """Polls `condition` until it returns something truthy and returns that; raises
    TimeoutError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def http_ok(url: str, timeout: float = 2) -> bool:
    """Whether `url` answers a GET with 200 now (a service's readiness probe for wait_until)."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status == 200
    except (OSError, urllib.error.URLError):
        return False


class ServedApp:
    """An ASGI app served by uvicorn in a daemon thread on a loopback port; `stop` ends it."""

    def __init__(self, app: Any, port: int | None = None, timeout: float = 20) -> None:
        import threading

        import uvicorn

        self.port = port or free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        wait_until(lambda: self.server.started, timeout, f"the app to listen on port {self.port}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


class _Process:
    """A child process with a log file; `stop` terminates it (then kills it)."""

    name = "service"

    def __init__(self, argv: list[str], log: Path | None) -> None:
        self.log_path = log
        out = open(log, "w") if log else subprocess.DEVNULL  # noqa: SIM115 - closed in stop
        self.process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self._out = out

    def _wait_ready(self, ready: Callable[[], bool], timeout: float) -> None:
        def check() -> bool:
            if self.process.poll() is not None:
                tail = self.log_path.read_text()[-2000:] if self.log_path else ""
                raise ServiceError(f"{self.name} exited with code {self.process.returncode} while starting\n{tail}")
            try:
                return ready()
            except Exception:  # any failed probe means "not yet"; the timeout bounds it
                return False

        try:
            wait_until(check, timeout, f"{self.name} to accept connections")
        except TimeoutError as error:
            self.stop()
            raise ServiceError(str(error)) from None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._out is not subprocess.DEVNULL:
            self._out.close()

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def set_interval_mining(rpc: Callable[[str, list], Any], seconds: int) -> None:
    """Makes an anvil reached through `rpc(method, params)` mine a block every `seconds`
    (0: each transaction at once, its default)."""
    if seconds:
        rpc("evm_setAutomine", [False])
        rpc("evm_setIntervalMining", [seconds])
    else:
        rpc("evm_setIntervalMining", [0])
        rpc("evm_setAutomine", [True])


def anvil_binary() -> str:
    """The anvil executable: the npm package's binary (`make` installs it), else PATH."""
    if ANVIL_NPM.exists():
        return str(ANVIL_NPM)
    found = shutil.which("anvil")
    if found is None:
        raise ServiceError("anvil not found: run `make node` (npm install @foundry-rs/anvil)")
    return found


class Anvil(_Process):
    """An anvil node with its default ten funded test accounts (the `test test ... junk`
    mnemonic that ape's TEST:: accounts use). `block_time` None mines each transaction at
    once; a number of seconds mines a block at that interval instead."""

    name = "anvil"

    def __init__(
        self,
        block_time: float | None = None,
        port: int | None = None,
        log: Path | None = None,
        accounts: int = 10,
        timeout: float = 30,
    ) -> None:
        self.port = port or free_port()
        argv = [anvil_binary(), "--host", "127.0.0.1", "--port", str(self.port), "--accounts", str(accounts)]
        if block_time is not None:
            argv += ["--block-time", str(block_time)]
        super().__init__(argv, log)
        self._wait_ready(self._answers, timeout)

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def rpc(self, method: str, params: list | None = None) -> Any:
        """One JSON-RPC call; raises ServiceError with the node's message on an error."""
        import json
        import urllib.request

        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []}).encode()
        request = urllib.request.Request(self.uri, body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            reply = json.loads(response.read())
        if "error" in reply:
            raise ServiceError(f"anvil {method}: {reply['error'].get('message', reply['error'])}")
        return reply["result"]

    def _answers(self) -> bool:
        return self.rpc("eth_chainId") is not None

    def interval_mining(self, seconds: int) -> None:
        """Switches to a block every `seconds` (0: back to mining each transaction at once)."""
        set_interval_mining(self.rpc, seconds)


class RedisServer(_Process):
    """A redis-server on a free loopback port with no persistence and `databases` databases."""

    name = "redis-server"

    def __init__(
        self,
        directory: Path,
        port: int | None = None,
        databases: int = 32,
        log: Path | None = None,
        timeout: float = 10,
    ) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise ServiceError("redis-server not found: install it (Debian: apt-get install redis-server)")
        self.port = port or free_port()
        argv = [
            binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(directory),
            "--databases",
            str(databases),
        ]
        super().__init__(argv, log)
        self._wait_ready(self._answers, timeout)

    def _answers(self) -> bool:
        # A bare PING with a short timeout (redis-py would retry for seconds): whatever holds
        # the port when this server could not bind it may never reply.
        with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def client(self, db: int = 0) -> Any:
        import redis

        return redis.Redis(port=self.port, db=db)


class ProcessGroup:
    """Child processes started together and stopped together, each logging to its own file."""

    def __init__(self) -> None:
        self.processes: list[subprocess.Popen] = []

    def spawn(
        self, argv: list[str], log: Path, env: dict[str, str] | None = None, cwd: Path = ROOT
    ) -> subprocess.Popen:
        with open(log, "w") as out:  # the child keeps its own descriptor
            process = subprocess.Popen(argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
        self.processes.append(process)
        return process

    def stop(self, sig: int = signal.SIGTERM, grace: float = 15) -> None:
        """Sends `sig` to every process still running, waits up to `grace` s each, then kills."""
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(sig)
        for process in self.processes:
            try:
                process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes = []


class DockerEngine(_Process):
    """A private dockerd for tests and the demo, for machines where none runs: no bridge and
    no iptables (containers run with networking off anyway), state under `directory`. Needs
    root. Storage is overlay2 (a container is created in milliseconds) where the kernel
    allows it, else vfs, which works in any container but copies the image per container."""

    name = "dockerd"

    def __init__(
        self,
        directory: Path,
        log: Path | None = None,
        timeout: float = 60,
        storage_drivers: tuple[str, ...] = ("overlay2", "vfs"),
    ) -> None:
        binary = shutil.which("dockerd")
        if binary is None:
            raise ServiceError("dockerd not found: install Docker (Debian: apt-get install docker.io)")
        if os.geteuid() != 0:
            raise ServiceError("starting a Docker engine needs root; start one yourself and set DOCKER_HOST")
        failures = []
        for driver in storage_drivers:
            root = directory / driver
            root.mkdir(parents=True, exist_ok=True)
            # A unix socket path is limited to 108 bytes; keep it short.
            self.socket = Path(tempfile.mkdtemp(prefix="dockerd-")) / "sock"
            argv = [
                binary,
                "--iptables=false",
                "--ip6tables=false",
                "--bridge=none",
                f"--storage-driver={driver}",
                "--data-root",
                str(root / "data"),
                "--exec-root",
                str(self.socket.parent / "exec"),
                "--pidfile",
                str(root / "dockerd.pid"),
                "-H",
                f"unix://{self.socket}",
            ]
            super().__init__(argv, log)
            try:
                self._wait_ready(lambda: self.client().ping(), timeout)
            except ServiceError as error:
                self.stop()  # closes its log before the next try reopens it
                _unmount(root / "data")  # dockerd mounts its data root before it gives up on a driver
                failures.append(f"{driver}: {str(error).splitlines()[0]}")
                continue
            self.storage_driver = driver
            return
        raise ServiceError("dockerd did not start with any storage driver: " + "; ".join(failures))

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def client(self) -> Any:
        import docker

        return docker.DockerClient(base_url=self.url, timeout=60)


def mounted(path: Path) -> bool:
    """Whether something is mounted at `path`. A bind mount of a folder onto itself (what
    dockerd does with its data root) stays on one device, so os.path.ismount misses it."""
    target = str(Path(path).resolve())
    try:
        lines = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return os.path.ismount(path)
    # Spaces and other odd bytes in mount points are written as octal escapes.
    return any(line.split()[1].encode().decode("unicode_escape") == target for line in lines if len(line.split()) > 1)


def _unmount(path: Path) -> None:
    """Unmounts whatever is mounted at `path` (a bind mount a failed dockerd left behind)."""
    while mounted(path):
        if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
            raise ServiceError(f"could not unmount {path}, which a failed dockerd left mounted")


def docker_reachable() -> bool:
    """Whether the engine DOCKER_HOST (or the default socket) names answers."""
    try:
        import docker

        docker.from_env(timeout=5).ping()
        return True
    except Exception:
        return False
