"""Config sections of where results go: the overlay, the live stats, event and report files,
MQTT, Prometheus and the web page; and their checks that span keys."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edge_fer.config.base import ConfigError
from edge_fer.core.paths import DEFAULT_STATS
from edge_fer.core.schema import setting, shown


@dataclass
class DisplayConfig:
    """Where the overlay is drawn."""

    mode: str = setting(
        "auto",
        "auto | drm (picamera2 preview + overlay) | window (SDL) | none",
        choices=("auto", "drm", "window", "none"),
        flag="--display",
        flag_help="where the overlay goes: auto (DRM preview on the console with a Camera Module, "
        "else an SDL window where a screen is, else none) | drm | window | none",
    )
    fullscreen: bool = setting(
        True,
        "fill the screen with the picture (scaled, aspect kept); false: a resizable window",
        flag="--fullscreen",
        flag_help="fill the screen with the picture, aspect kept (default); --no-fullscreen: a window",
    )
    top3: bool = setting(
        True,
        "bars under each face with its three most likely emotions",
        flag="--top3",
        flag_help="bars with each face's three most likely emotions (default on)",
    )


@dataclass
class StatsConfig:
    """Live figures for edge-fer-monitor and systemd's STATUS line."""

    path: Path | None = setting(
        DEFAULT_STATS,
        "live stats JSON, rewritten about once a second (null: none)",
        flag="--stats-path",
        flag_help="live stats JSON for edge-fer-monitor",
    )
    interval_s: float = setting(1.0, "seconds between stats updates", ge=0.05, le=3600)
    window_s: float = setting(10.0, "latency percentiles and fps are over this window", ge=0.5, le=3600)


@dataclass
class EventsConfig:
    """One JSON line per frame (labels and numbers only)."""

    path: str | None = setting(
        None,
        "JSONL file to append to, '-' for stdout, null for none",
        flag="--events-jsonl",
        flag_help="write one JSON line per frame here ('-': stdout)",
    )


@dataclass
class ReportConfig:
    """The end-of-run summary."""

    path: Path | None = setting(
        None,
        "JSON file written when the daemon stops (null: none)",
        flag="--report-json",
        flag_help="write a run summary here at exit",
    )


@dataclass
class MqttConfig:
    """Home Assistant over MQTT: availability, emotions, faces and stats (never pixels)."""

    url: str | None = setting(
        None,
        "broker, mqtt://host:1883 or mqtts://host:8883 (null: off)",
        flag="--mqtt",
        flag_help="publish to this MQTT broker (mqtt://host:1883)",
        metavar="URL",
    )
    username: str | None = setting(None, "broker user name")
    password_file: Path | None = setting(
        None, "file holding the broker password (never the password itself in this file)"
    )
    client_id: str | None = setting(
        None, "MQTT client id, one per daemon (null: edge-fer-<hostname>[-<instance>]-<random>, new each run)"
    )
    topic_prefix: str | None = setting(None, "state topics go under this (null: edge-fer/<hostname>)")
    discovery_prefix: str = setting("homeassistant", "Home Assistant's discovery prefix")
    qos: int = setting(0, "QoS of state messages", ge=0, le=2)
    retain: bool = setting(False, "retain state messages on the broker")
    queue_size: int = setting(
        1000, "messages kept while the broker is slow; more are dropped and counted", ge=10, le=1_000_000
    )
    queue_bytes: int = setting(
        4_000_000,
        "bytes of messages kept while the broker is slow (well under the unit's MemoryMax)",
        ge=10_000,
        le=64_000_000,
    )


@dataclass
class MetricsConfig:
    """Prometheus /metrics endpoint."""

    port: int | None = setting(
        None,
        "TCP port for /metrics (null: off)",
        ge=1,
        le=65535,
        flag="--metrics-port",
        flag_help="serve Prometheus /metrics on this port (127.0.0.1 unless metrics.bind)",
        metavar="PORT",
    )
    bind: str = setting("127.0.0.1", "address to listen on (0.0.0.0: all interfaces)")


@dataclass
class WebConfig:
    """The local web page (docs/web.md): live picture, faces, label mix, health; frames never stored."""

    enabled: bool = setting(False, "serve the page (off: no frame ever leaves the daemon this way)")
    bind: str = setting(
        "127.0.0.1", "address to listen on; any but a loopback address needs token_file (0.0.0.0: all)"
    )
    port: int = setting(8080, "TCP port (the same as metrics.port: one server for both)", ge=1, le=65535)
    token_file: Path | None = setting(
        None, "file holding the access token, mode 0600 (at least 16 characters; openssl rand -hex 16)"
    )
    fps: float = setting(5.0, "most pictures a second sent to a viewer", ge=0.2, le=15)
    width: int = setting(
        960, "widest picture sent, in pixels (smaller frames are sent as they are)", ge=160, le=3840
    )


def is_loopback(bind: str) -> bool:
    """True for an address only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    import ipaddress

    if bind.lower() in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(bind.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: whatever it resolves to may change


def check_web(web: WebConfig, metrics: MetricsConfig) -> None:
    """A page reachable from other machines needs a token; a port shared with /metrics, one bind."""
    if not web.enabled:
        return
    if not is_loopback(web.bind) and web.token_file is None:
        raise ConfigError(
            f"config key 'web.bind': {shown(web.bind)} lets other machines see the camera, so it needs "
            "web.token_file (a file holding a token, chmod 600); or bind 127.0.0.1"
        )
    if metrics.port == web.port and metrics.bind != web.bind:
        raise ConfigError(
            f"config key 'web.port': {web.port} is also metrics.port but web.bind {shown(web.bind)} is not "
            f"metrics.bind {shown(metrics.bind)}; one server listens on one address: set both alike"
        )


# MQTT 3.1.1/5: strings are at most 65535 bytes; topics hold no wildcards or NUL. Tighter
# limits keep every topic (prefix + the longest suffix) well inside that.
MQTT_PREFIX_MAX_BYTES = 1024
MQTT_CLIENT_ID_MAX_BYTES = 256


def check_mqtt_names(mqtt: MqttConfig) -> None:
    """Topic prefixes, client id and user name that a broker will take."""
    for key in ("topic_prefix", "discovery_prefix"):
        value = getattr(mqtt, key)
        if value is None:
            continue
        size = len(value.encode("utf-8"))
        bad = next((c for c in ("#", "+", "\0") if c in value), None)
        if bad is not None or value.startswith("$") or not value.strip("/") or size > MQTT_PREFIX_MAX_BYTES:
            why = (
                f"holds {bad!r} (an MQTT wildcard or NUL)"
                if bad
                else f"is {size} bytes"
                if size > MQTT_PREFIX_MAX_BYTES
                else "starts with $ or has no topic level"
            )
            raise ConfigError(
                f"config key 'mqtt.{key}': {value!r} {why}; use plain topic levels such as "
                f"home/pi-door (at most {MQTT_PREFIX_MAX_BYTES} bytes, no #, + or $ at the start)"
            )
    if mqtt.client_id is not None:
        size = len(mqtt.client_id.encode("utf-8"))
        if size > MQTT_CLIENT_ID_MAX_BYTES or not mqtt.client_id.isprintable():
            raise ConfigError(
                f"config key 'mqtt.client_id' is not valid ({size} bytes or unprintable characters); "
                f"use at most {MQTT_CLIENT_ID_MAX_BYTES} printable characters, e.g. edge-fer-door"
            )
    if mqtt.username is not None and (len(mqtt.username.encode("utf-8")) > 65535 or "\0" in mqtt.username):
        raise ConfigError(
            "config key 'mqtt.username' is not valid; use a user name without NUL, under 64 KiB"
        )
    if mqtt.password_file is not None and mqtt.username is None:
        raise ConfigError("config key 'mqtt.password_file' needs mqtt.username; set both")


def parse_mqtt_url(url: str) -> tuple[str, int, bool]:
    """(host, port, tls) from mqtt://host[:port] or mqtts://host[:port]."""
    from urllib.parse import urlsplit

    def bad() -> ConfigError:
        return ConfigError(
            f"config key 'mqtt.url': {url!r} is not valid; expected mqtt://host[:port] or mqtts://host[:port]"
        )

    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise bad() from None
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname or parts.path not in ("", "/"):
        raise bad()
    if parts.username or parts.password:
        raise ConfigError(
            "config key 'mqtt.url' must not hold credentials; use mqtt.username and mqtt.password_file"
        )
    tls = parts.scheme == "mqtts"
    return parts.hostname, port or (8883 if tls else 1883), tls
