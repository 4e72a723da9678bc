"""`edge-fer`: the camera daemon's command line.

Exit codes (`edge_fer.core.exit_codes.ExitCode`, the table in docs/exit-codes.md): 0 clean stop,
1 internal error, 2 bad config, flags or output path, 3 model error, 4 camera/source error
(also when a video source can no longer be read), 5 display error, 6 not enough memory. Each
error is one line naming the problem and the fix.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from edge_fer import __version__
from edge_fer.core.exit_codes import ExitCode
from edge_fer.core.logs import ensure_std_streams, setup_logging
from edge_fer.core.memory import LowMemory, low_memory_as_one_line, run_guarded

# Only the standard library before the signal handlers are in place: everything else is
# imported inside main() (OpenCV and numpy take ~0.2 s, and a SIGHUP then would kill us).
from edge_fer.runtime.service import SignalState

if TYPE_CHECKING:
    from edge_fer.config import Config

log = logging.getLogger("edge_fer")
EXIT_CONFIG, EXIT_MODEL, EXIT_SOURCE, EXIT_DISPLAY = (
    ExitCode.CONFIG,
    ExitCode.MODEL,
    ExitCode.SOURCE,
    ExitCode.DISPLAY,
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from edge_fer.config import DEFAULT_CONFIG_PATH, MAX_THREADS, choices

    p = argparse.ArgumentParser(prog="edge-fer", description="Facial emotion recognition daemon.")
    p.add_argument(
        "--config",
        type=Path,
        default=DEFAULT_CONFIG_PATH,
        help=f"YAML config (default {DEFAULT_CONFIG_PATH}; defaults if it is absent)",
    )
    p.add_argument(
        "--source", help="auto | picamera2 | webcam[:INDEX] | file:PATH | rtsp://... | http(s)://..."
    )
    p.add_argument(
        "--pace",
        choices=choices("pace"),
        help="video files: realtime (their own fps, the default) | fast (as fast as possible)",
    )
    p.add_argument("--instance", help="camera name when a Pi runs several (edge-fer@NAME), e.g. cam0")
    p.add_argument(
        "--display",
        choices=choices("display.mode"),
        help="where the overlay goes: auto (DRM preview on the console with a Camera Module, "
        "else an SDL window where a screen is, else none) | drm | window | none",
    )
    p.add_argument(
        "--fullscreen",
        action=argparse.BooleanOptionalAction,
        help="fill the screen with the picture, aspect kept (default); --no-fullscreen: a window",
    )
    p.add_argument(
        "--top3",
        action=argparse.BooleanOptionalAction,
        help="bars with each face's three most likely emotions (default on)",
    )
    p.add_argument("--model", help="model file (.pte, or a float .pt checkpoint)")
    p.add_argument("--detector", choices=choices("detector.kind"))
    p.add_argument("--yunet-model", help="YuNet .onnx file (with --detector yunet)")
    p.add_argument("--threads", type=int, help=f"classifier threads (1-{MAX_THREADS})")
    p.add_argument(
        "--runtime", choices=choices("model.runtime"), help="how the .pte is run (overrides model.runtime)"
    )
    p.add_argument("--max-frames", type=int, help="stop after N frames")
    p.add_argument("--events-jsonl", help="write one JSON line per frame here ('-': stdout)")
    p.add_argument("--report-json", help="write a run summary here at exit")
    p.add_argument("--stats-path", help="live stats JSON for edge-fer-monitor")
    p.add_argument("--mqtt", metavar="URL", help="publish to this MQTT broker (mqtt://host:1883)")
    p.add_argument(
        "--metrics-port",
        type=int,
        metavar="PORT",
        help="serve Prometheus /metrics on this port (127.0.0.1 unless metrics.bind)",
    )
    p.add_argument(
        "--web",
        nargs="?",
        type=int,
        const=0,
        metavar="PORT",
        help="serve the live web page (on web.port, or PORT; 127.0.0.1 unless web.bind)",
    )
    p.add_argument(
        "--console",
        choices=choices("console"),
        help="one status line a second on the terminal (auto: when headless)",
    )
    p.add_argument("--no-loop", action="store_true", help="stop at the end of a video file")
    p.add_argument(
        "--log-summary",
        type=float,
        metavar="SECONDS",
        help="seconds between result summaries in the log when there is no console line (0: none)",
    )
    p.add_argument("--log-level", choices=choices("log_level"))
    p.add_argument("--version", action="version", version=f"edge-fer {__version__}")
    args = p.parse_args(argv)
    if args.max_frames is not None and args.max_frames <= 0:
        p.error(f"--max-frames must be a positive integer, got {args.max_frames}")
    if args.threads is not None and not 1 <= args.threads <= MAX_THREADS:
        p.error(f"--threads must be between 1 and {MAX_THREADS} (the Pi 5 has 4 cores), got {args.threads}")
    return args


def build_config(args: argparse.Namespace) -> Config:
    """The config file with the flags applied on top, its output paths checked against each
    other and against the files it reads."""
    from edge_fer.config import apply_overrides, check_output_paths, load_config

    config = load_config(args.config)
    config = apply_overrides(
        config,
        {
            "source": args.source,
            "pace": args.pace,
            "instance": args.instance,
            "display.mode": args.display,
            "display.fullscreen": args.fullscreen,
            "display.top3": args.top3,
            "model.path": args.model,
            "detector.kind": args.detector,
            "detector.yunet_model": args.yunet_model,
            "model.threads": args.threads,
            "model.runtime": args.runtime,
            "stats.path": args.stats_path,
            "events.path": args.events_jsonl,
            "report.path": args.report_json,
            "mqtt.url": args.mqtt,
            "metrics.port": args.metrics_port,
            "web.enabled": True if args.web is not None else None,
            "web.port": args.web or None,
            "console": args.console,
            "log_level": args.log_level,
            "log_summary_s": args.log_summary,
            "loop_video": False if args.no_loop else None,
        },
    )
    return check_output_paths(config, args.config)


def main(argv: list[str] | None = None) -> int:
    """The daemon; under a memory limit too small to run it, one line and ExitCode.MEMORY."""
    return run_guarded("edge-fer", lambda: _main(argv))


def _main(argv: list[str] | None) -> int:
    ensure_std_streams()  # started with >&-: /dev/null, not a crash or stray writes
    signals = SignalState()
    signals.install()  # first: a SIGHUP, SIGUSR1 or SIGTERM during start-up must not kill it
    args = parse_args(argv)
    setup_logging(args.log_level or "INFO")
    signals.logging_ready()
    from edge_fer.config import ConfigError
    from edge_fer.display.screen import DisplayError
    from edge_fer.emotions.classifier import ModelError
    from edge_fer.faces.detect import DetectorError
    from edge_fer.outputs.base import OutputError
    from edge_fer.runtime.daemon import run_daemon
    from edge_fer.runtime.service import Notifier
    from edge_fer.runtime.stats import RunStats
    from edge_fer.runtime.summary import final_line
    from edge_fer.sources.base import CaptureError

    signals.reload.clear()  # the config read next is the newest anyway
    try:
        with low_memory_as_one_line("edge-fer"):
            config = build_config(args)
    except ConfigError as exc:
        log.error("config error: %s", exc)
        return EXIT_CONFIG
    if signals.stop.is_set():
        return 0
    setup_logging(config.log_level)
    notifier = Notifier()
    stats = RunStats(config.stats.window_s)
    code = ExitCode.OK
    why = "error"
    try:
        with low_memory_as_one_line("edge-fer"):
            why = run_daemon(config, lambda: build_config(args), signals, notifier, stats, args.max_frames)
    except LowMemory as exc:
        log.error("%s", exc)
        code = ExitCode.MEMORY
    except (ConfigError, OutputError) as exc:
        log.error("config error: %s", exc)
        code = EXIT_CONFIG
    except (ModelError, DetectorError) as exc:
        log.error("model error: %s", exc)
        code = EXIT_MODEL
    except CaptureError as exc:
        log.error("camera error: %s", exc)
        code = EXIT_SOURCE
    except DisplayError as exc:
        log.error("display error: %s", exc)
        code = EXIT_DISPLAY
    except Exception as exc:  # noqa: BLE001 - a bug: still one line, the details at DEBUG
        log.error(
            "internal error: %s: %s; please report it (run with --log-level DEBUG for details)",
            type(exc).__name__,
            exc,
        )
        log.debug("internal error", exc_info=exc)
        code = ExitCode.INTERNAL
    finally:
        notifier.stopping()
        # The run's summary, whatever stopped it (a start-up failure has only its error).
        if why != "error" or stats.frames:
            summary = final_line(stats, why, time.monotonic() - stats.started_mono)
            logging.getLogger("edge_fer.runtime.summary").info("%s", summary)
    return code


if __name__ == "__main__":
    sys.exit(main())
