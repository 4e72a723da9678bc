"""MQTT output with Home Assistant discovery (`mqtt:`, `--mqtt URL`). Labels and numbers only.

Topics, under `topic_prefix` (default `edge-fer/<hostname>`):
  availability  online / offline (retained; offline is also the last will, so a crashed
                daemon shows as unavailable)
  state         {"emotion", "score", "faces", "tracked": [{"id", "emotion", "score"}]}: the
                frame's dominant smoothed emotion (the most common smoothed label, ties to
                the highest score; null with no face) and each tracked face's, when any of
                them or the face count changes and at least every stats interval
  face          {"id", "label", "score", "box"} when a face's smoothed label changes
  stats         {"fps", "frames", "dropped_frames", "reconnects", "mqtt_dropped",
                "latency_ms": {stage: {"p50", "p95"}}} every stats interval (fps null until
                it is known, latency_ms null before the first frame). On connecting, before
                `online`: fresh stats (nothing known yet), so after a restart Home Assistant
                shows unknown, not the previous run's last figures.
Discovery configs are retained under `<discovery_prefix>/sensor/<node>/<object>/config`; with
`instance` (edge-fer@NAME) the node, topics and device carry the instance name. Every sensor
expires (`expire_after`, unavailable in Home Assistant) when the daemon stops publishing for
several stats intervals (frames stalled) without going offline.

The client id is `mqtt.client_id`, or by default `edge-fer-<hostname>[-<instance>]-<random>`,
new each run: two daemons on one host (or two hosts with one name) never share one. A broker
that drops the client because another connected with its id ("Session taken over" in MQTT 5,
repeated drops right after connecting in 3.1.1) is logged as that, with the fix.

The frame loop never waits on the network: paho's own thread does the I/O, messages queue up
to `queue_size` messages and `queue_bytes` bytes and further ones are dropped and counted;
paho reconnects with back-off and each outage is logged once, with its reason.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge_fer import __version__
from edge_fer.config import MqttConfig, parse_mqtt_url
from edge_fer.core.secrets import SecretError, read_secret
from edge_fer.emotions import labels
from edge_fer.outputs.base import Every, OutputError
from edge_fer.runtime.results import FrameResult

if TYPE_CHECKING:
    from edge_fer.runtime.stats import RunStats

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


NO_VALUE = "None"  # what Home Assistant's MQTT sensor reads as unknown

# Sensors expire after this many stats intervals without a message (at least EXPIRE_MIN_S):
# enough for a slow frame or a reload to pass, not to show a stalled daemon's figures as live.
EXPIRE_INTERVALS = 5
EXPIRE_MIN_S = 10
# A connection the broker ends within QUICK_DROP_S, QUICK_DROPS times in a row, is another
# client taking the same client id over each time (MQTT 3.1.1 brokers give no reason).
QUICK_DROP_S = 5.0
QUICK_DROPS = 3
TAKEN_OVER = "Session taken over"  # MQTT 5's reason (142) for exactly that


def expire_after_s(stats_interval_s: float) -> int:
    """Seconds without a message after which Home Assistant shows a sensor as unavailable."""
    return max(EXPIRE_MIN_S, math.ceil(EXPIRE_INTERVALS * stats_interval_s))


def default_client_id(hostname: str, instance: str | None) -> str:
    """`edge-fer-<hostname>[-<instance>]-<6 random hex digits>`: unique per run, so daemons
    never knock each other off the broker by sharing one."""
    return f"edge-fer-{hostname}" + (f"-{instance}" if instance else "") + f"-{os.urandom(3).hex()}"


def published_labels(groups: str = "none") -> tuple[str, ...]:
    """Every value the Emotion sensor can show: its enum `options` in Home Assistant."""
    return labels.published_labels(groups)


@dataclass(frozen=True)
class Sensor:
    """One Home Assistant sensor of the device (its discovery config comes from this)."""

    object_id: str
    name: str
    topic: str  # state topic suffix: state or stats
    template: str
    icon: str
    unit: str | None = None
    device_class: str | None = None
    state_class: str | None = None
    entity_category: str | None = None


SENSORS: tuple[Sensor, ...] = (
    # No face: "None", which Home Assistant shows as unknown (not the text "none").
    Sensor(
        "emotion",
        "Emotion",
        "state",
        "{{ value_json.emotion if value_json.emotion else 'None' }}",
        "mdi:emoticon-outline",
        device_class="enum",
    ),
    Sensor(
        "emotion_score",
        "Emotion score",
        "state",
        "{{ (value_json.score * 100) | round(1) if value_json.emotion else 'None' }}",
        "mdi:percent",
        unit="%",
        state_class="measurement",
    ),
    Sensor(
        "faces", "Faces", "state", "{{ value_json.faces }}", "mdi:face-recognition", state_class="measurement"
    ),
    Sensor(
        "fps",
        "Frames per second",
        "stats",
        "{{ value_json.fps if value_json.fps is not none else 'None' }}",
        "mdi:speedometer",
        unit="fps",
        state_class="measurement",
        entity_category="diagnostic",
    ),
    Sensor(
        "classify_ms",
        "Classify time p50",
        "stats",
        "{{ value_json.latency_ms.classify.p50 if value_json.latency_ms else 'None' }}",
        "mdi:timer-outline",
        unit="ms",
        device_class="duration",
        state_class="measurement",
        entity_category="diagnostic",
    ),
    Sensor(
        "frame_ms",
        "Frame time p95",
        "stats",
        "{{ value_json.latency_ms.total.p95 if value_json.latency_ms else 'None' }}",
        "mdi:timer-outline",
        unit="ms",
        device_class="duration",
        state_class="measurement",
        entity_category="diagnostic",
    ),
    Sensor(
        "dropped_frames",
        "Dropped frames",
        "stats",
        "{{ value_json.dropped_frames }}",
        "mdi:alert-circle-outline",
        state_class="total_increasing",
        entity_category="diagnostic",
    ),
)
# Which tracked face shows what: attributes of the Emotion sensor (see the README).
TRACKED_ATTRIBUTES = "{{ {'tracked_faces': value_json.tracked} | tojson }}"


def discovery_configs(
    node: str,
    prefix: str,
    discovery_prefix: str,
    device_name: str,
    model: str,
    options: tuple[str, ...],
    expire_after: int | None = None,
) -> dict[str, dict[str, Any]]:
    """Each sensor's retained discovery topic and config. Both `object_id` (what releases
    before 2025.10 read) and `default_entity_id` (what later ones read) name the entity;
    `expire_after` (seconds) makes a sensor unavailable when no message came for that long."""
    device = {
        "identifiers": [f"edge_fer_{node}"],
        "name": device_name,
        "manufacturer": "edge-fer",
        "model": model,
        "sw_version": __version__,
    }
    configs = {}
    for sensor in SENSORS:
        entity = f"edge_fer_{node}_{sensor.object_id}"
        payload: dict[str, Any] = {
            "name": sensor.name,
            "unique_id": entity,
            "object_id": entity,
            "default_entity_id": f"sensor.{entity}",
            "state_topic": f"{prefix}/{sensor.topic}",
            "value_template": sensor.template,
            "availability_topic": f"{prefix}/availability",
            "icon": sensor.icon,
            "device": device,
            "origin": {"name": "edge-fer", "sw_version": __version__},
        }
        if expire_after is not None:
            payload["expire_after"] = expire_after
        for key in ("unit", "device_class", "state_class", "entity_category"):
            value = getattr(sensor, key)
            if value is not None:
                payload["unit_of_measurement" if key == "unit" else key] = value
        if sensor.device_class == "enum":
            payload["options"] = list(options)
            payload["json_attributes_topic"] = f"{prefix}/{sensor.topic}"
            payload["json_attributes_template"] = TRACKED_ATTRIBUTES
        configs[f"{discovery_prefix}/sensor/edge_fer_{node}/{sensor.object_id}/config"] = payload
    return configs


class MqttPublisher:
    """Publishes the daemon's results to an MQTT broker, non-blocking."""

    name = "mqtt"

    def __init__(
        self,
        config: MqttConfig,
        stats_interval_s: float,
        model_info: dict[str, str],
        instance: str | None = None,
        label_set: tuple[str, ...] | None = None,
        run_stats: RunStats | None = None,
    ) -> None:
        """`run_stats`: the run's counters, whose counts (frames, dropped frames, reconnects)
        the first stats message carries, also after a reload (Dropped frames is a
        total_increasing sensor: a 0 would read as a reset)."""
        import paho.mqtt.client as mqtt

        host, port, tls = parse_mqtt_url(config.url or "")
        hostname = node_name()
        # One device per camera: edge-fer@cam1 is its own device, topics and client.
        self.node = f"{hostname}_{instance}" if instance else hostname
        default_prefix = f"edge-fer/{hostname}" + (f"/{instance}" if instance else "")
        self.prefix = (config.topic_prefix or default_prefix).rstrip("/")
        self.discovery_prefix = config.discovery_prefix.rstrip("/")
        self.device_name = f"edge-fer {hostname}" + (f" {instance}" if instance else "")
        self.labels = label_set or published_labels()
        self.qos, self.retain = config.qos, config.retain
        self.where = f"{host}:{port}"
        self._mqtt = mqtt
        self.client_id = config.client_id or default_client_id(hostname, instance)
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id)
        if config.username is not None:
            self.client.username_pw_set(config.username, self._password(config.password_file))
        if tls:
            self.client.tls_set()
        self.client.max_queued_messages_set(config.queue_size)
        self.queue_bytes = config.queue_bytes
        self.client.reconnect_delay_set(min_delay=1, max_delay=30)
        self.client.will_set(f"{self.prefix}/availability", "offline", qos=1, retain=True)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_connect_fail = self._on_connect_fail
        self.client.on_publish = self._on_publish
        self._connected = threading.Event()
        self._connected_at = 0.0
        self._quick_drops = 0  # connections in a row the broker ended within QUICK_DROP_S
        self._taken_over_logged = False
        self._outage_logged = False
        self._closing = False
        self._pending: dict[int, int] = {}  # message id -> bytes, until paho has sent it
        self._pending_bytes = 0
        self._early: set[int] = set()
        self._lock = threading.Lock()
        self.dropped = 0
        self.sent = 0
        self.every = Every(stats_interval_s)
        self.stats_every = Every(stats_interval_s)
        self.stats_every.due()  # the first stats wait one interval: fps is known by then
        self.expire_after = expire_after_s(stats_interval_s)
        self._stats_now = False  # publish stats at the next frame (reconnected mid-run)
        self._run_stats = run_stats
        self.model_info = model_info
        self._last_state: tuple | None = None
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
            return read_secret(path, "mqtt.password_file")
        except SecretError as exc:
            raise OutputError(f"mqtt: {exc}") from None

    def _outage(self, message: str, *args: object) -> None:
        """Log the first failure of an outage (with its reason); later ones go to debug."""
        if self._closing:
            return
        if not self._outage_logged:
            self._outage_logged = True
            log.warning(
                message + "; retrying in the background, results are dropped and counted meanwhile", *args
            )
        else:
            log.debug(message, *args)

    def _reach(self) -> str:
        """Why the broker cannot be reached, from a direct connect (paho does not say)."""
        host, _, port = self.where.rpartition(":")
        try:
            socket.create_connection((host, int(port)), timeout=2).close()
        except OSError as exc:
            return exc.strerror or str(exc)
        return "it accepts TCP but the MQTT connection failed (TLS or protocol)"

    # paho's network thread calls these
    def _on_connect(
        self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any = None
    ) -> None:
        if reason.is_failure:
            self._outage("mqtt: broker %s refused the connection: %s", self.where, reason)
            return
        # While another client keeps taking this id over, each reconnect is not news.
        level = logging.DEBUG if self._quick_drops >= 2 else logging.INFO
        log.log(
            level, "mqtt: connected to %s as %s, publishing under %s", self.where, self.client_id, self.prefix
        )
        self._outage_logged = False
        self._connected_at = time.monotonic()
        self._connected.set()
        self._publish_discovery()
        # Fresh figures before `online`, so Home Assistant never shows the previous run's (or
        # the time before an outage's) as current: nothing known yet at start, the live ones
        # at the next frame after a reconnect (stats are read on the frame loop's thread).
        if self._stats is None:
            self._send(f"{self.prefix}/stats", json.dumps(self._stats_payload(None)))
        else:
            self._stats_now = True
        self._last_state = None  # the state too, at the next frame
        self._send(f"{self.prefix}/availability", "online", qos=1, retain=True)

    def _on_connect_fail(self, client: Any, userdata: Any) -> None:
        if self._outage_logged:
            return
        self._outage("mqtt: cannot reach broker %s (%s)", self.where, self._reach())

    def _on_disconnect(
        self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any = None
    ) -> None:
        was_connected = self._connected.is_set()
        self._connected.clear()
        with self._lock:  # what paho had not sent is gone with the connection (QoS 0)
            self._pending.clear()
            self._early.clear()
            self._pending_bytes = 0
        if was_connected:
            quick = time.monotonic() - self._connected_at < QUICK_DROP_S
            self._quick_drops = self._quick_drops + 1 if quick else 0
            if not quick:
                self._taken_over_logged = False
            if reason == TAKEN_OVER or self._quick_drops >= QUICK_DROPS:
                self._taken_over(reason)
            elif self._quick_drops >= 2 or self._taken_over_logged:
                log.debug("mqtt: lost broker %s again (%s)", self.where, reason)
            else:
                self._outage("mqtt: lost broker %s (%s)", self.where, reason)
        else:
            self._outage(
                "mqtt: broker %s closed the connection before accepting it (%s); check mqtt.url "
                "names an MQTT broker and mqtts:// matches its TLS",
                self.where,
                reason,
            )

    def _taken_over(self, reason: Any) -> None:
        """Another client connected with this client id: say so once, with the fix."""
        if self._closing or self._taken_over_logged:
            log.debug("mqtt: dropped by broker %s again (%s)", self.where, reason)
            return
        self._taken_over_logged = True
        fix = (
            "give each daemon its own mqtt.client_id (or leave it unset: each run then makes a "
            "unique one); reconnecting meanwhile"
        )
        if reason == TAKEN_OVER:
            log.warning(
                "mqtt: broker %s dropped this client: another client connected with the same client "
                "id %r (%s); %s",
                self.where,
                self.client_id,
                reason,
                fix,
            )
        else:
            log.warning(
                "mqtt: broker %s dropped this client %d times in a row within %g s of accepting it "
                "(last: %s): most likely another client is connected with the same client id %r "
                "and each connection takes the other's over (if not, the broker's log says why); %s",
                self.where,
                self._quick_drops,
                QUICK_DROP_S,
                reason,
                self.client_id,
                fix,
            )

    def _on_publish(
        self, client: Any, userdata: Any, mid: int, reason: Any = None, properties: Any = None
    ) -> None:
        with self._lock:
            size = self._pending.pop(mid, None)
            if size is None:
                self._early.add(mid)  # sent before _send recorded it
            else:
                self._pending_bytes -= size

    def _send(self, topic: str, payload: str, qos: int | None = None, retain: bool | None = None) -> None:
        if not self._connected.is_set():
            self.dropped += 1
            return
        size = len(topic) + len(payload)
        if self._pending_bytes + size > self.queue_bytes:
            self.dropped += 1  # the broker is slower than we publish: keep memory bounded
            return
        # paho's lock, not ours, is held while it publishes (its thread calls _on_publish).
        info = self.client.publish(
            topic,
            payload,
            qos=self.qos if qos is None else qos,
            retain=self.retain if retain is None else retain,
        )
        if info.rc != self._mqtt.MQTT_ERR_SUCCESS:
            self.dropped += 1
            return
        self.sent += 1
        with self._lock:
            if info.mid in self._early:
                self._early.discard(info.mid)
            else:
                self._pending[info.mid] = size
                self._pending_bytes += size

    @property
    def pending_bytes(self) -> int:
        """Bytes handed to paho and not yet written to the broker."""
        return self._pending_bytes

    def _publish_discovery(self) -> None:
        configs = discovery_configs(
            self.node,
            self.prefix,
            self.discovery_prefix,
            self.device_name,
            self.model_info.get("name", "edge-fer"),
            self.labels,
            self.expire_after,
        )
        for topic, payload in configs.items():
            self._send(topic, json.dumps(payload), qos=1, retain=True)

    def on_frame(self, result: FrameResult, stats: RunStats) -> None:
        label, score = dominant(result)
        tracked = [
            {"id": f.id, "emotion": f.smoothed, "score": round(f.smoothed_score, 4)}
            for f in sorted(result.faces, key=lambda f: f.id)
        ]
        state = (label, len(result.faces), tuple((t["id"], t["emotion"]) for t in tracked))
        periodic = self.every.due()
        if state != self._last_state or periodic:
            self._last_state = state
            self._send(
                f"{self.prefix}/state",
                json.dumps(
                    {
                        "emotion": label,
                        "score": round(score, 4),
                        "faces": len(result.faces),
                        "tracked": tracked,
                    }
                ),
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
        if self.stats_every.due() or self._stats_now:
            self._stats_now = False
            self._publish_stats(stats)

    def _stats_payload(self, stats: RunStats | None) -> dict[str, Any]:
        """The stats message, from the live stats (`LiveStats`, as the stats file has them);
        with no stats (before this pipeline's first frame) no rate or time is known yet, only
        the run's counts (plain integers: safe to read from paho's thread)."""
        if stats is None:
            run = self._run_stats
            fps, latency = 0.0, None
            counts = (run.frames, run.bad_frames, run.reconnects) if run else (0, 0, 0)
        else:
            live = stats.snapshot()
            fps = live.fps
            counts = (live.frames, live.dropped_frames, live.reconnects)
            latency = {
                stage: {"p50": round(spread.p50, 3), "p95": round(spread.p95, 3)}
                for stage, spread in live.latency_ms.items()
            }
            if not live.window_frames:
                latency = None  # no frame in the window: nothing measured
        frames, dropped, reconnects = counts
        return {
            # null (unknown in Home Assistant) until two frames give a rate
            "fps": round(fps, 2) if fps > 0 else None,
            "frames": frames,
            "dropped_frames": dropped,
            "reconnects": reconnects,
            "mqtt_dropped": self.dropped,
            "latency_ms": latency,
        }

    def _publish_stats(self, stats: RunStats) -> None:
        payload = self._stats_payload(stats)
        self._stats_frames = payload["frames"]
        self._send(f"{self.prefix}/stats", json.dumps(payload))

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


# The output's registration (edge_fer.outputs.registration), kept last.
from edge_fer.outputs.registration import register_output  # noqa: E402

if TYPE_CHECKING:
    from collections.abc import Sequence

    from edge_fer.outputs.base import Output, OutputContext


@register_output("mqtt", section="mqtt", order=70)
def mqtt_output(ctx: OutputContext, earlier: Sequence[Output]) -> MqttPublisher | None:
    """`mqtt.url` turns publishing to the broker (and Home Assistant discovery) on."""
    if ctx.config.mqtt.url is None:
        return None
    c = ctx.config
    labels = published_labels(c.smoothing.groups)
    return MqttPublisher(c.mqtt, c.stats.interval_s, ctx.model_info, c.instance, labels, ctx.stats)
