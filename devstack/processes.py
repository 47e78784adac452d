"""Start, watch and stop the stack: simulator, callback sink, connector, action server, Rasa.

Used by ``make demo`` (``python -m devstack demo``) and by the end-to-end tests,
which start their own stack on free ports and stop it afterwards.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from assistant.settings import demo_callback_secret
from devstack.credentials import load_or_create_demo_credentials

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Ports:
    rasa: int = 5005
    actions: int = 5055
    simulator: int = 8700
    sink: int = 8701
    connector: int = 8702
    partner: int = 8080  # the sample partner site embedding the chat widget

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Ports:
        return cls(
            rasa=int(env.get("RASA_PORT", 5005)),
            actions=int(env.get("ACTION_PORT", 5055)),
            simulator=int(env.get("SIM_PORT", 8700)),
            sink=int(env.get("SINK_PORT", 8701)),
            connector=int(env.get("CONNECTOR_PORT", 8702)),
            partner=int(env.get("PARTNER_SITE_PORT", 8080)),
        )

    @classmethod
    def free(cls) -> Ports:
        return cls(*(free_port() for _ in range(6)))


@dataclass
class Process:
    name: str
    command: list[str]
    ready_url: str
    popen: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    # Added to the stack's environment for this process only (a second Rasa's port…).
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class Stack:
    """The demo stack. ``env`` is added to this process's environment for every child."""

    model_path: Path
    ports: Ports = field(default_factory=Ports)
    state_dir: Path = ROOT / "var"
    env: dict[str, str] = field(default_factory=dict)
    processes: list[Process] = field(default_factory=list)

    def child_env(self) -> dict[str, str]:
        creds = load_or_create_demo_credentials(self.state_dir)
        sim = f"http://127.0.0.1:{self.ports.simulator}"
        sink = f"http://127.0.0.1:{self.ports.sink}/callback"
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "STATE_DIR": str(self.state_dir),
            "SIMULATOR_URL": sim,
            "SIM_PORT": str(self.ports.simulator),
            "SIM_SERVICE_ID": creds.service_id,
            "SIM_SERVICE_KEY": creds.service_key,
            "SIM_DEMO_TOKEN": creds.demo_token,
            "SINK_PORT": str(self.ports.sink),
            "CONNECTOR_PORT": str(self.ports.connector),
            "RASA_PORT": str(self.ports.rasa),
            "PARTNER_SITE_PORT": str(self.ports.partner),
            # LG calls the connector back; the secret rides in the registered URL.
            "SIM_CALLBACK_URL": (
                f"http://127.0.0.1:{self.ports.connector}/lg/callbacks"
                f"?secret={demo_callback_secret(creds.service_key)}"
            ),
            # Delivered notifications are recorded in the conversation through Rasa's API.
            "RASA_URL": f"http://127.0.0.1:{self.ports.rasa}",
            "CALLBACK_URL": os.environ.get("CALLBACK_URL") or sink,
            "ACTION_ENDPOINT_URL": f"http://127.0.0.1:{self.ports.actions}/webhook",
            # rasa_sdk binds to SANIC_HOST (default 0.0.0.0); the demo stays on loopback.
            "SANIC_HOST": os.environ.get("SANIC_HOST", "127.0.0.1"),
            "SQLALCHEMY_SILENCE_UBER_WARNING": "1",
        }
        env.update(self.env)
        return env

    def plan(self) -> list[Process]:
        python = sys.executable
        rasa = str(Path(python).with_name("rasa"))
        return [
            Process(
                "simulator",
                [python, "-m", "simulator"],
                f"http://127.0.0.1:{self.ports.simulator}/sim/health",
            ),
            Process(
                "callback-sink",
                [python, "-m", "devstack.sink"],
                f"http://127.0.0.1:{self.ports.sink}/health",
            ),
            Process(
                "connector",
                [python, "-m", "connector"],
                f"http://127.0.0.1:{self.ports.connector}/health",
            ),
            Process(
                "action-server",
                [
                    python,
                    "-m",
                    "rasa_sdk",
                    "--actions",
                    "actions",
                    "--port",
                    str(self.ports.actions),
                ],
                f"http://127.0.0.1:{self.ports.actions}/health",
            ),
            Process(
                "rasa",
                [
                    rasa,
                    "run",
                    "--enable-api",
                    "--port",
                    str(self.ports.rasa),
                    "--interface",
                    "127.0.0.1",
                    "--model",
                    str(self.model_path),
                    "--credentials",
                    "credentials.yml",
                    "--endpoints",
                    "endpoints.yml",
                    "--cors",
                    "*",
                ],
                f"http://127.0.0.1:{self.ports.rasa}/",
            ),
            Process(
                "partner-site",
                [python, "-m", "devstack.partner_site"],
                f"http://127.0.0.1:{self.ports.partner}/health",
            ),
        ]

    def start(self, timeout_seconds: float = 180.0) -> None:
        logs = self.state_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        env = self.child_env()
        self.processes = self.plan()
        try:
            for proc in self.processes:
                proc.log_path = logs / f"{proc.name}.log"
                self._launch(proc, env)
            deadline = time.monotonic() + timeout_seconds
            for proc in self.processes:
                self._wait_ready(proc, deadline)
        except BaseException:
            self.stop()
            raise

    @staticmethod
    def _launch(proc: Process, env: dict[str, str]) -> None:
        assert proc.log_path is not None
        with proc.log_path.open("ab") as log:
            proc.popen = subprocess.Popen(
                proc.command,
                cwd=ROOT,
                env={**env, **proc.env},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # so stop() can end its whole process group
            )

    def process(self, name: str) -> Process:
        found = [p for p in self.processes if p.name == name]
        if not found:
            raise KeyError(f"no process {name!r} in this stack")
        return found[0]

    def kill(self, name: str, sig: signal.Signals = signal.SIGKILL) -> None:
        """End one process the hard way (a crash, for the load test), and reap it."""
        proc = self.process(name)
        assert proc.popen is not None
        try:
            os.killpg(proc.popen.pid, sig)
        except ProcessLookupError:
            pass
        proc.popen.wait(timeout=15)

    def restart(self, name: str, timeout_seconds: float = 180.0) -> None:
        """Start a process that was killed again, with the same command, and wait for it."""
        proc = self.process(name)
        if proc.popen is not None and proc.popen.poll() is None:
            raise RuntimeError(f"{name} is still running")
        self._launch(proc, self.child_env())
        self._wait_ready(proc, time.monotonic() + timeout_seconds)

    def _wait_ready(self, proc: Process, deadline: float) -> None:
        assert proc.popen is not None
        while time.monotonic() < deadline:
            if proc.popen.poll() is not None:
                raise RuntimeError(
                    f"{proc.name} exited with code {proc.popen.returncode}; see {proc.log_path}\n"
                    + self.log_tail(proc)
                )
            try:
                if httpx.get(proc.ready_url, timeout=2.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise TimeoutError(f"{proc.name} not ready at {proc.ready_url}; see {proc.log_path}")

    @staticmethod
    def log_tail(proc: Process, lines: int = 30) -> str:
        if proc.log_path is None or not proc.log_path.exists():
            return ""
        return "\n".join(proc.log_path.read_text(errors="replace").splitlines()[-lines:])

    def dead(self) -> list[Process]:
        return [p for p in self.processes if p.popen is not None and p.popen.poll() is not None]

    def stop(self) -> None:
        for proc in reversed(self.processes):
            if proc.popen is not None and proc.popen.poll() is None:
                try:
                    os.killpg(proc.popen.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for proc in reversed(self.processes):
            if proc.popen is None:
                continue
            try:
                proc.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.popen.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.popen.wait(timeout=5)

    def __enter__(self) -> Stack:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
