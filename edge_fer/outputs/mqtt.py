"""MQTT output with Home Assistant discovery (`mqtt:`, `--mqtt URL`). Labels and numbers only.

Topics, under `topic_prefix` (default `edge-fer/<hostname>`):
  availability  online / offline (retained; offline is also the last will, so a crashed
                daemon shows as unavailable)
  state         {"emotion", "score", "faces"}: the frame's dominant smoothed emotion (the
                most common smoothed label, ties to the highest score), when it or the face
                count changes and at least every stats interval
  face          {"id", "label", "score", "box"} when a face's smoothed label changes
  stats         {"fps", "frames", "dropped_frames", "reconnects", "mqtt_dropped",
                "latency_ms": {stage: {"p50", "p95"}}} every stats interval
Discovery configs are retained under `<discovery_prefix>/sensor/<node>/<object>/config`.

The frame loop never waits on the network: paho's own thread does the I/O, messages queue up
to `queue_size` and further ones are dropped and counted; paho reconnects with back-off and
an outage is logged once.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import threading
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge_fer import __version__
from edge_fer.config import MqttConfig, parse_mqtt_url
from edge_fer.outputs.base import Every, OutputError
from edge_fer.results import FrameResult

if TYPE_CHECKING:
    from edge_fer.stats import RunStats

log = logging.getLogger(__name__)


def node_name() -> str:
    """This device's name for topics and ids: the hostname, reduced to [a-z0-9_-]."""
    return re.sub(r"[^a-z0-9_-]+", "_", socket.gethostname().lower()).strip("_") or "edge_fer"


def dominant(result: FrameResult) -> tuple[str | None, float]:
    """The frame's most common smoothed label (ties: the higher summed score), with its mean
    score; (None, 0.0) with no faces."""
    if not result.faces:
        return None, 0.0
    counts = Counter(f.smoothed for f in result.faces)
    scores: dict[str, float] = {}
    for f in result.faces:
        scores[f.smoothed] = scores.get(f.smoothed, 0.0) + f.smoothed_score
    label = max(counts, key=lambda k: (counts[k], scores[k]))
    return label, scores[label] / counts[label]


# (object id, name, state topic suffix, value template, unit, icon)
SENSORS: tuple[tuple[str, str, str, str, str | None, str], ...] = (
    (
        "emotion",
        "Emotion",
        "state",
        "{{ value_json.emotion if value_json.emotion else 'none' }}",
        None,
        "mdi:emoticon-outline",
    ),
    ("emotion_score", "Emotion score", "state", "{{ value_json.score }}", None, "mdi:percent"),
    ("faces", "Faces", "state", "{{ value_json.faces }}", None, "mdi:face-recognition"),
    ("fps", "Frames per second", "stats", "{{ value_json.fps }}", "fps", "mdi:speedometer"),
    (
        "classify_ms",
        "Classify time p50",
        "stats",
        "{{ value_json.latency_ms.classify.p50 }}",
        "ms",
        "mdi:timer-outline",
    ),
    (
        "frame_ms",
        "Frame time p95",
        "stats",
        "{{ value_json.latency_ms.total.p95 }}",
        "ms",
        "mdi:timer-outline",
    ),
    (
        "dropped_frames",
        "Dropped frames",
        "stats",
        "{{ value_json.dropped_frames }}",
        None,
        "mdi:alert-circle-outline",
    ),
)


class MqttPublisher:
    """Publishes the daemon's results to an MQTT broker, non-blocking."""

    name = "mqtt"

    def __init__(self, config: MqttConfig, stats_interval_s: float, model_info: dict[str, str]) -> None:
        import paho.mqtt.client as mqtt

        host, port, tls = parse_mqtt_url(config.url or "")
        node = node_name()
        self.node = node
        self.prefix = (config.topic_prefix or f"edge-fer/{node}").rstrip("/")
        self.discovery_prefix = config.discovery_prefix.rstrip("/")
        self.qos, self.retain = config.qos, config.retain
        self.where = f"{host}:{port}"
        self._mqtt = mqtt
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=config.client_id or f"edge-fer-{node}"
        )
        if config.username is not None:
            self.client.username_pw_set(config.username, self._password(config.password_file))
        if tls:
            self.client.tls_set()
        self.client.max_queued_messages_set(config.queue_size)
        self.client.reconnect_delay_set(min_delay=1, max_delay=30)
        self.client.will_set(f"{self.prefix}/availability", "offline", qos=1, retain=True)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_connect_fail = self._on_connect_fail
        self._connected = threading.Event()
        self._outage_logged = False
        self._closing = False
        self.dropped = 0
        self.sent = 0
        self.every = Every(stats_interval_s)
        self.model_info = model_info
        self._last_state: tuple[str | None, int] | None = None
        self._face_labels: dict[int, str] = {}
        self._stats: RunStats | None = None
        self._stats_frames = -1
        try:
            self.client.connect_async(host, port, keepalive=30)
        except (OSError, ValueError) as exc:
            raise OutputError(f"mqtt: cannot use broker {self.where} ({exc}); check mqtt.url") from None
        self.client.loop_start()

    @staticmethod
    def _password(path: Path | None) -> str | None:
        if path is None:
            return None
        try:
            return Path(path).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            raise OutputError(
                f"mqtt: cannot read mqtt.password_file {path} ({reason}); make it a "
                "readable file holding the password"
            ) from None

    # paho's network thread calls these
    def _on_connect(
        self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any = None
    ) -> None:
        if reason.is_failure:
            if not self._outage_logged:
                log.warning("mqtt: broker %s refused the connection: %s", self.where, reason)
                self._outage_logged = True
            return
        log.info("mqtt: connected to %s, publishing under %s", self.where, self.prefix)
        self._outage_logged = False
        self._connected.set()
        self._publish_discovery()
        self._send(f"{self.prefix}/availability", "online", qos=1, retain=True)

    def _on_connect_fail(self, client: Any, userdata: Any) -> None:
        if not self._outage_logged:
            log.warning(
                "mqtt: cannot reach broker %s; retrying in the background, results are "
                "dropped and counted meanwhile",
                self.where,
            )
            self._outage_logged = True

    def _on_disconnect(
        self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any = None
    ) -> None:
        was_connected = self._connected.is_set()
        self._connected.clear()
        if was_connected and not self._outage_logged and not self._closing:
            log.warning(
                "mqtt: lost broker %s (%s); reconnecting in the background, results "
                "are dropped and counted meanwhile",
                self.where,
                reason,
            )
            self._outage_logged = True

    def _send(self, topic: str, payload: str, qos: int | None = None, retain: bool | None = None) -> None:
        if not self._connected.is_set():
            self.dropped += 1
            return
        info = self.client.publish(
            topic,
            payload,
            qos=self.qos if qos is None else qos,
            retain=self.retain if retain is None else retain,
        )
        if info.rc == self._mqtt.MQTT_ERR_SUCCESS:
            self.sent += 1
        else:
            self.dropped += 1

    def _publish_discovery(self) -> None:
        device = {
            "identifiers": [f"edge_fer_{self.node}"],
            "name": f"edge-fer {self.node}",
            "manufacturer": "edge-fer",
            "model": self.model_info.get("name", "edge-fer"),
            "sw_version": __version__,
        }
        for object_id, name, topic, template, unit, icon in SENSORS:
            payload: dict[str, Any] = {
                "name": name,
                "unique_id": f"edge_fer_{self.node}_{object_id}",
                "object_id": f"edge_fer_{self.node}_{object_id}",
                "state_topic": f"{self.prefix}/{topic}",
                "value_template": template,
                "availability_topic": f"{self.prefix}/availability",
                "icon": icon,
                "device": device,
            }
            if unit is not None:
                payload["unit_of_measurement"] = unit
                payload["state_class"] = "measurement"
            self._send(
                f"{self.discovery_prefix}/sensor/edge_fer_{self.node}/{object_id}/config",
                json.dumps(payload),
                qos=1,
                retain=True,
            )

    def on_frame(self, result: FrameResult, stats: RunStats) -> None:
        label, score = dominant(result)
        state = (label, len(result.faces))
        periodic = self.every.due()
        if state != self._last_state or periodic:
            self._last_state = state
            self._send(
                f"{self.prefix}/state",
                json.dumps({"emotion": label, "score": round(score, 4), "faces": len(result.faces)}),
            )
        seen = set()
        for face in result.faces:
            seen.add(face.id)
            if self._face_labels.get(face.id) != face.smoothed:
                self._face_labels[face.id] = face.smoothed
                self._send(
                    f"{self.prefix}/face",
                    json.dumps(
                        {
                            "id": face.id,
                            "label": face.smoothed,
                            "score": round(face.smoothed_score, 4),
                            "box": list(face.box),
                        }
                    ),
                )
        for gone in set(self._face_labels) - seen:
            del self._face_labels[gone]
        self._stats = stats
        if periodic:
            self._publish_stats(stats)

    def _publish_stats(self, stats: RunStats) -> None:
        live = stats.live()
        self._stats_frames = live["frames"]
        self._send(
            f"{self.prefix}/stats",
            json.dumps(
                {
                    "fps": round(live["fps"], 2),
                    "frames": live["frames"],
                    "dropped_frames": live["dropped_frames"],
                    "reconnects": live["reconnects"],
                    "mqtt_dropped": self.dropped,
                    "latency_ms": {
                        k: {"p50": round(v["p50"], 3), "p95": round(v["p95"], 3)}
                        for k, v in live["latency_ms"].items()
                    },
                }
            ),
        )

    def close(self) -> None:
        self._closing = True
        # A run shorter than one stats interval still ends with its real numbers.
        if self._stats is not None and self._stats.frames != self._stats_frames:
            self._publish_stats(self._stats)
        if self._connected.is_set():
            info = self.client.publish(f"{self.prefix}/availability", "offline", qos=1, retain=True)
            try:
                info.wait_for_publish(timeout=1.0)
            except (RuntimeError, ValueError):
                pass
        self.client.disconnect()
        self.client.loop_stop()
        if self.dropped:
            log.info("mqtt: %d message(s) were dropped while the broker was away or slow", self.dropped)
