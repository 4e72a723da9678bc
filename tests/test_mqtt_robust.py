"""MQTT failure modes against real sockets on 127.0.0.1: a port with nothing on it, a "broker"
that accepts TCP and hangs up before CONNACK, one that never reads (the byte-bounded queue),
and names and credential files refused at config time."""

from __future__ import annotations

import logging
import socket
import threading
import time
from pathlib import Path

import pytest

from edge_fer.config import ConfigError, MqttConfig, load_config
from edge_fer.outputs.base import OutputError
from edge_fer.outputs.mqtt import MqttPublisher
from testkit.streams import free_port


class FakeBroker:
    """A TCP listener that either closes each connection at once (`mode="drop"`) or answers
    CONNECT with CONNACK and then never reads again (`mode="deaf"`)."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.conns: list[socket.socket] = []
        self._stop = False
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            if self.mode == "drop":
                conn.close()
                continue
            conn.recv(4096)  # CONNECT
            conn.sendall(bytes([0x20, 0x02, 0x00, 0x00]))  # CONNACK, accepted
            self.conns.append(conn)  # ... and never read from it again

    def close(self) -> None:
        self._stop = True
        self.sock.close()
        for c in self.conns:
            c.close()


def publisher(port: int, **kw) -> MqttPublisher:
    return MqttPublisher(MqttConfig(url=f"mqtt://127.0.0.1:{port}", **kw), 1.0, {"name": "test"})


def test_nothing_listening_is_logged_once_with_the_reason(caplog):
    caplog.set_level(logging.WARNING, logger="edge_fer.outputs.mqtt")
    pub = publisher(free_port())
    try:
        time.sleep(3.5)  # paho retries every 1-2 s meanwhile
    finally:
        pub.close()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "cannot reach broker" in lines[0] and "refused" in lines[0].lower(), lines


def test_a_broker_that_hangs_up_before_connack_is_logged_once(caplog):
    caplog.set_level(logging.WARNING, logger="edge_fer.outputs.mqtt")
    fake = FakeBroker("drop")
    pub = publisher(fake.port)
    try:
        deadline = time.monotonic() + 10
        while fake.accepted < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        pub.close()
        fake.close()
    assert fake.accepted >= 3  # paho kept retrying
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "before accepting it" in lines[0], lines


def test_the_queue_is_bounded_in_bytes_when_the_broker_stops_reading():
    fake = FakeBroker("deaf")
    pub = publisher(fake.port, queue_bytes=200_000, queue_size=1_000_000)
    try:
        assert pub._connected.wait(10)
        payload = "x" * 2000
        peak = 0
        for _ in range(20_000):  # 40 MB offered
            pub._send("edge-fer/t/state", payload)
            peak = max(peak, pub.pending_bytes)
        assert pub.dropped > 10_000
        assert peak <= 200_000
    finally:
        pub.close()
        fake.close()


@pytest.mark.fast
@pytest.mark.parametrize(
    "mqtt, message",
    [
        ("topic_prefix: home/#", "MQTT wildcard"),
        ("topic_prefix: home/+/x", "MQTT wildcard"),
        ('topic_prefix: "a\\0b"', "contains a NUL byte"),  # the boundary every string goes through
        ("topic_prefix: " + "a" * 2000, "2000 bytes"),
        ("discovery_prefix: $SYS", "starts with $"),
        ("client_id: " + "c" * 300, "client_id"),
        ("password_file: /etc/x", "needs mqtt.username"),
    ],
)
def test_bad_names_are_refused_at_config_time(tmp_path, mqtt, message):
    config = tmp_path / "c.yaml"
    config.write_text(f"mqtt:\n  url: mqtt://127.0.0.1:1883\n  {mqtt}\n")
    with pytest.raises(ConfigError, match=message.replace("$", r"\$").replace("+", r"\+")):
        load_config(config)


@pytest.mark.fast
def test_a_readable_password_file_is_refused_naming_chmod_600(tmp_path):
    secret = tmp_path / "mqtt.pass"
    secret.write_text("pw\n")
    secret.chmod(0o640)
    config = MqttConfig(url=f"mqtt://127.0.0.1:{free_port()}", username="ha", password_file=secret)
    with pytest.raises(OutputError, match=f"chmod 600 {secret}"):
        MqttPublisher(config, 1.0, {})
    secret.chmod(0o600)
    MqttPublisher(config, 1.0, {}).close()
    empty = Path(tmp_path / "empty.pass")
    empty.write_text("")
    empty.chmod(0o600)
    with pytest.raises(OutputError, match="is empty"):
        MqttPublisher(MqttConfig(url=config.url, username="ha", password_file=empty), 1.0, {})
