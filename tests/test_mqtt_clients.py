"""Several edge-fer clients on one real Mosquitto: each daemon has its own client id unless one
is configured, a client id shared by two daemons is named as the cause when the broker keeps
dropping them, and Home Assistant gets fresh figures (not the previous run's) at every
connect, with sensors that expire when publishing stops."""

from __future__ import annotations

import json
import logging
import time

import numpy as np
import pytest

from edge_fer.config import MqttConfig
from edge_fer.emotions.labels import EMOTIONS
from edge_fer.outputs.mqtt import MqttPublisher, expire_after_s, node_name
from edge_fer.runtime.results import FaceResult, FrameResult
from edge_fer.runtime.stats import RunStats
from testkit.mqtt import MOSQUITTO, Broker, Subscriber

pytestmark = pytest.mark.skipif(MOSQUITTO is None, reason="mosquitto not installed (apt install mosquitto)")

LOGGER = "edge_fer.outputs.mqtt"


def publisher(port: int, interval_s: float = 1.0, **kw) -> MqttPublisher:
    return MqttPublisher(MqttConfig(url=f"mqtt://127.0.0.1:{port}", **kw), interval_s, {"name": "test"})


def wait_until(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def ready_subscriber(port: int) -> Subscriber:
    """A subscriber on '#' that has seen its own probe (so it misses nothing after this)."""
    sub = Subscriber(port)
    deadline = time.monotonic() + 10
    while not sub.topics("test/probe") and time.monotonic() < deadline:
        sub.client.publish("test/probe", "1")
        time.sleep(0.1)
    assert sub.topics("test/probe"), "the subscriber did not come up"
    return sub


def messages(records: list[logging.LogRecord], level: int) -> list[str]:
    return [r.getMessage() for r in records if r.name == LOGGER and r.levelno == level]


def test_two_daemons_on_one_host_each_get_their_own_client_id_and_stay_connected(tmp_path, caplog):
    """Without --instance or mqtt.client_id (the set-up that knocked both off the broker
    every second): two ids, each connected once, no warning."""
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    broker = Broker(tmp_path)
    pubs = [publisher(broker.port), publisher(broker.port)]
    try:
        assert wait_until(lambda: all(p._connected.is_set() for p in pubs), 10)
        time.sleep(4)  # a shared id would have been taken over several times by now
        assert all(p._connected.is_set() for p in pubs)
        configured = publisher(broker.port, client_id="edge-fer-door")
        configured.close()
    finally:
        for p in pubs:
            p.close()
        broker.stop()
    a, b = (p.client_id for p in pubs)
    assert a != b and all(i.startswith(f"edge-fer-{node_name()}-") for i in (a, b))
    assert configured.client_id == "edge-fer-door"  # a configured id is kept as it is
    connects = [m for m in messages(caplog.records, logging.INFO) if "connected to" in m]
    ids = [m.split(" as ")[1].split(",")[0] for m in connects]
    assert ids.count(a) == 1 and ids.count(b) == 1  # each connected once, never knocked off
    assert messages(caplog.records, logging.WARNING) == []
    assert not [m for m in messages(caplog.records, logging.DEBUG) if "lost broker" in m]


def test_a_client_id_two_daemons_share_is_named_as_the_cause(tmp_path, caplog):
    """Both configured with one client id on MQTT 3.1.1: Mosquitto drops the older
    connection at each connect, giving no reason; the log says what it is and the fix,
    once, instead of a 'lost broker' line a second."""
    caplog.set_level(logging.INFO, logger=LOGGER)
    broker = Broker(tmp_path)
    pubs = [publisher(broker.port, client_id="edge-fer-door") for _ in range(2)]
    try:
        named = wait_until(
            lambda: any("same client id" in m for m in messages(caplog.records, logging.WARNING)), 30
        )
        time.sleep(3)  # and it stays quiet while the two go on fighting
    finally:
        for p in pubs:
            p.close()
        broker.stop()
    warnings = messages(caplog.records, logging.WARNING)
    assert named, warnings
    cause = [m for m in warnings if "same client id" in m]
    assert all("'edge-fer-door'" in m and "give each daemon its own mqtt.client_id" in m for m in cause)
    assert 1 <= len(cause) <= 2  # once per daemon
    assert len(warnings) - len(cause) <= 2  # at most the first "lost broker" of each


@pytest.mark.fast
def test_session_taken_over_is_named_at_once(tmp_path, caplog):
    """MQTT 5 brokers say why (reason 142): no need to wait for repeated drops."""
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.reasoncodes import ReasonCode

    caplog.set_level(logging.WARNING, logger=LOGGER)
    broker = Broker(tmp_path)
    pub = publisher(broker.port, client_id="edge-fer-door")
    try:
        assert wait_until(pub._connected.is_set, 10)
        # what paho's network thread calls with a v5 DISCONNECT from the broker
        pub._on_disconnect(pub.client, None, None, ReasonCode(PacketTypes.DISCONNECT, identifier=142))
    finally:
        pub.close()
        broker.stop()
    (line,) = messages(caplog.records, logging.WARNING)
    assert "another client connected with the same client id 'edge-fer-door' (Session taken over)" in line
    assert "give each daemon its own mqtt.client_id" in line


def _frame(stats: RunStats, seq: int) -> FrameResult:
    probs = np.full(7, 0.05, np.float32)
    probs[3] = 0.7
    face = FaceResult(1, (10, 10, 50, 50), "happy", 0.7, "happy", probs, smoothed_score=0.7)
    timing = {"capture": 1.0, "detect": 5.0, "classify": 0.5, "total": 6.5}
    stats.add_frame(timing, [1], ["happy"])
    return FrameResult(seq, time.time(), np.zeros((8, 8, 3), np.uint8), [face], timing, "", EMOTIONS)


def test_home_assistant_gets_fresh_figures_at_every_connect(tmp_path):
    """At start: stats that say nothing is known yet, before `online` (so the previous run's
    fps and times are never shown as current); after a broker outage: the live figures at the
    next frame, not one stats interval later. Every sensor expires when publishing stops."""
    broker = Broker(tmp_path)
    sub = ready_subscriber(broker.port)
    pub = publisher(broker.port, interval_s=30.0)  # no periodic stats during the test
    stats = RunStats()
    try:
        assert sub.wait_for("/availability", "online", timeout=10)
        configs = [json.loads(p) for _, _, p, _ in sub.topics("/config")]
        assert len(configs) == 7 and {c["expire_after"] for c in configs} == {expire_after_s(30.0)} == {150}
        assert expire_after_s(1.0) == 10 and expire_after_s(0.05) == 10
        start = [(t, json.loads(p)) for t, _, p, _ in sub.topics("/stats")]
        assert len(start) == 1 and start[0][1]["fps"] is None and start[0][1]["latency_ms"] is None
        assert start[0][1]["frames"] == 0 and start[0][1]["dropped_frames"] == 0
        online = next(t for t, _, p, _ in sub.topics("/availability") if p == "online")
        assert start[0][0] <= online  # fresh figures first, then available
        for i in range(5):
            pub.on_frame(_frame(stats, i), stats)
            time.sleep(0.01)
        assert len(sub.topics("/stats")) == 1  # the interval has not passed
        sub.close()
        broker.stop()
        broker.start()
        back = time.monotonic()
        sub = ready_subscriber(broker.port)
        assert wait_until(pub._connected.is_set, 40)
        pub.on_frame(_frame(stats, 5), stats)
        assert sub.wait_for("/stats", timeout=5, after=back)
        (fresh,) = [json.loads(p) for t, _, p, _ in sub.topics("/stats") if t > back]
        assert fresh["frames"] == 6 and fresh["fps"] > 0 and fresh["latency_ms"]["classify"]["p50"] == 0.5
        assert sub.wait_for("/state", timeout=5, after=back)  # the state too, though unchanged
    finally:
        pub.close()
        sub.close()
        broker.stop()


def test_after_a_reload_the_first_stats_keep_the_runs_counts(tmp_path):
    """SIGHUP builds a new publisher while the run's counters go on: its first stats carry
    the run's frames and dropped frames (a total_increasing sensor must not fall back to 0,
    which Home Assistant would count as a reset), with no rate or time measured yet."""
    broker = Broker(tmp_path)
    sub = ready_subscriber(broker.port)
    stats = RunStats()
    for i in range(4):
        _frame(stats, i)
    stats.bad_frames = 2
    config = MqttConfig(url=f"mqtt://127.0.0.1:{broker.port}")
    pub = MqttPublisher(config, 30.0, {"name": "test"}, run_stats=stats)
    try:
        assert sub.wait_for("/availability", "online", timeout=10)
        (first,) = [json.loads(p) for _, _, p, _ in sub.topics("/stats")]
    finally:
        pub.close()
        sub.close()
        broker.stop()
    assert first["frames"] == 4 and first["dropped_frames"] == 2
    assert first["fps"] is None and first["latency_ms"] is None
