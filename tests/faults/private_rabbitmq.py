"""A private RabbitMQ node for fault tests: its own node name, loopback ports, data and log
directories, Erlang cookie and HOME, no plugins; stopped and restarted by the test, never the
machine's shared broker."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from tests.ports import free_port

_BIN = Path("/usr/lib/rabbitmq/bin")


@dataclass
class PrivateRabbit:
    root: Path
    port: int
    dist_port: int
    node: str = field(default_factory=lambda: f"armillary-{uuid.uuid4().hex[:8]}@localhost")
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def env(self) -> dict[str, str]:
        home = self.root / "home"
        return {
            **os.environ,
            "HOME": str(home),
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.root / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.root / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.root / "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": str(self.root / "rabbitmq"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(self.root / "advanced.config"),
            "RABBITMQ_CONF_ENV_FILE": str(self.root / "rabbitmq-env.conf"),
            "RABBITMQ_PID_FILE": str(self.root / "node.pid"),
        }

    def start(self, timeout: float = 60) -> None:
        log = (self.root / "server.out").open("ab")
        self.process = subprocess.Popen(
            [str(_BIN / "rabbitmq-server")],
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the private RabbitMQ node exited: see {self.root}")
            if self._accepts_amqp():
                return
            time.sleep(0.2)
        raise RuntimeError("the private RabbitMQ node did not start")

    def _accepts_amqp(self) -> bool:
        # The listener opens last in the boot sequence: a handshake reply means it is ready.
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"AMQP\x00\x00\x09\x01")
                sock.settimeout(2)
                return len(sock.recv(8)) > 0
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is None:
            return
        with contextlib.suppress(subprocess.SubprocessError):
            subprocess.run(
                [str(_BIN / "rabbitmqctl"), "-n", self.node, "stop"],
                env=self.env(),
                capture_output=True,
                timeout=60,
            )
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, 9)
            self.process.wait()
        self.process = None

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def private_rabbitmq(extra_config: str = "") -> PrivateRabbit:
    """A node on free loopback ports; ``extra_config`` is appended to its rabbitmq.conf
    (``{port}`` in it is a further free port, e.g. a TLS listener's)."""
    root = Path(tempfile.mkdtemp(prefix="armillary-fault-rabbit-"))
    (root / "home").mkdir()
    cookie = root / "home" / ".erlang.cookie"
    cookie.write_text(uuid.uuid4().hex.upper())
    cookie.chmod(0o400)
    (root / "enabled_plugins").write_text("[].\n")
    (root / "rabbitmq.conf").write_text("loopback_users = none\n" + extra_config)
    (root / "advanced.config").write_text("[].\n")
    (root / "rabbitmq-env.conf").write_text("")
    server = PrivateRabbit(root, free_port(), free_port())
    server.start()
    return server
