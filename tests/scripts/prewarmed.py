"""`ape run` commands, each in a process of its own, forked from one that has already imported
ape, its plugins and what the scripts import.

A cold `ape run` took 4.7 s here, most of it imports (cProfile: ape's managers and plugins,
py-evm through ape-test's provider, the scripts' own imports), and the script tests run about
ninety commands. Here each command still gets a fresh process with its own
argv, output streams and exit status, entered through the `ape` console script's own `cli`;
only the imports are done once. Nothing is connected, configured or loaded before the fork.

The server (this file run as a script) reads one JSON request a line on stdin, forks, and
answers with the child's pid and then its exit status.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

# What the scripts and ape import before they do anything: a child starts with these loaded.
WARM_IMPORTS = (
    "ape._cli",
    "ape_run._cli",
    "ape_test.provider",
    "ape.managers.chain",
    "ape_ethereum.provider",
    "ape_foundry.provider",
    "pandas",
    "computenet.market",
    "computenet.deploy",
    "computenet.store",
    "computenet.staging",
    "computenet.zk",
    "agent.machine",
    "keepers.main",
)


class PrewarmedApe:
    """Runs `ape ARGS` in `cwd` under `env` like `subprocess.run(capture_output=True, text=True)`."""

    def __init__(self, python: Path, cwd: Path, env: dict[str, str], logs: Path):
        self.logs = logs
        self.logs.mkdir(parents=True, exist_ok=True)
        self._count = 0
        self._server = subprocess.Popen(
            [str(python), str(Path(__file__).resolve())],
            cwd=cwd,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        ready = self._answer(timeout=120)
        assert ready == {"ready": True}, ready

    def run(
        self, args: list[str], env: dict[str, str] | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess:
        """`ape ARGS`, with `env` added to the environment the server started with."""
        self._count += 1
        out, err = self.logs / f"{self._count}.out", self.logs / f"{self._count}.err"
        request = {"args": args, "env": env or {}, "stdout": str(out), "stderr": str(err)}
        self._server.stdin.write(json.dumps(request) + "\n")
        self._server.stdin.flush()
        pid = self._answer(timeout=30)["pid"]
        try:
            code = self._answer(timeout=timeout)["rc"]
        except TimeoutError:
            os.kill(pid, signal.SIGKILL)
            self._answer(timeout=30)
            raise subprocess.TimeoutExpired(["ape", *args], timeout) from None
        return subprocess.CompletedProcess(["ape", *args], code, out.read_text(), err.read_text())

    def close(self) -> None:
        self._server.stdin.close()
        try:
            self._server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._server.kill()

    def _answer(self, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while not select.select([self._server.stdout], [], [], max(0.0, deadline - time.monotonic()))[0]:
            if time.monotonic() >= deadline:
                raise TimeoutError(f"no answer from the prewarmed ape in {timeout} s")
        line = self._server.stdout.readline()
        if not line:
            raise RuntimeError(f"the prewarmed ape exited ({self._server.wait()})")
        return json.loads(line)


def _child(request: dict) -> None:
    """Runs one command as the `ape` console script would. It never returns: its SystemExit, or
    an uncaught exception, ends the process as either would end a fresh one."""
    null = os.open(os.devnull, os.O_RDONLY)
    out = os.open(request["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    err = os.open(request["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    for fd, target in ((null, 0), (out, 1), (err, 2)):
        os.dup2(fd, target)
        os.close(fd)
    os.environ.update(request["env"])
    from ape._cli import cli

    sys.argv = ["ape", *request["args"]]
    sys.exit(cli.main(args=request["args"], prog_name="ape"))


def serve() -> None:
    import importlib

    sys.path[0] = str(Path(sys.executable).parent)  # as for the console script in .venv/bin
    for name in WARM_IMPORTS:
        importlib.import_module(name)
    answers = sys.stdout
    answers.write(json.dumps({"ready": True}) + "\n")
    answers.flush()
    for line in sys.stdin:
        pid = os.fork()
        if pid == 0:
            _child(json.loads(line))
        answers.write(json.dumps({"pid": pid}) + "\n")
        answers.flush()
        _, status = os.waitpid(pid, 0)
        answers.write(json.dumps({"rc": os.waitstatus_to_exitcode(status)}) + "\n")
        answers.flush()


if __name__ == "__main__":
    serve()
