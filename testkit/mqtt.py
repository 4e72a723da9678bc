"""A real Mosquitto broker on 127.0.0.1 and a subscriber that records what it carries."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from pathlib import Path

from testkit.streams import free_port, have_mosquitto

MOSQUITTO = have_mosquitto()


class Broker:
    """A real mosquitto on 127.0.0.1 with a free port; stop() and start() keep the port."""

    def __init__(self, folder: Path, users: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.conf = folder / "mosquitto.conf"
        lines = [f"listener {self.port} 127.0.0.1", "persistence false"]
        if os.geteuid() == 0:  # as root mosquitto would switch to its own user, who can't read ours
            lines.append("user root")
        if users:
            passwd = folder / "passwd"
            for i, (user, password) in enumerate(users.items()):
                subprocess.run(
                    ["mosquitto_passwd", "-b", *([] if i else ["-c"]), str(passwd), user, password],
                    check=True,
                    capture_output=True,
                )
            passwd.chmod(0o600)
            lines += ["allow_anonymous false", f"password_file {passwd}"]
        else:
            lines.append("allow_anonymous true")
        self.conf.write_text("\n".join(lines) + "\n")
        self.proc: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=5)
            self.proc = None


class Subscriber:
    """Collects every message on '#' (with the retain flag) in a background paho thread."""

    def __init__(self, port: int, **auth: str) -> None:
        import paho.mqtt.client as mqtt

        self.messages: list[tuple[float, str, str, bool]] = []
        self.lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        if auth:
            self.client.username_pw_set(auth["username"], auth["password"])
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, *_: c.subscribe("#", qos=1)
        self.client.reconnect_delay_set(0.2, 1)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_message(self, _c, _u, m) -> None:
        with self.lock:
            self.messages.append((time.monotonic(), m.topic, m.payload.decode(), bool(m.retain)))

    def topics(self, suffix: str) -> list[tuple[float, str, str, bool]]:
        with self.lock:
            return [m for m in self.messages if m[1].endswith(suffix)]

    def wait_for(
        self, suffix: str, payload: str | None = None, timeout: float = 20, after: float = 0.0
    ) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(t > after and (payload is None or p == payload) for t, _, p, _ in self.topics(suffix)):
                return True
            time.sleep(0.05)
        return False

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()
