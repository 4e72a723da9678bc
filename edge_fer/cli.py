"""`edge-fer`: the camera daemon's command line.

Exit codes: 0 clean stop, 2 bad config or flags, 3 model error, 4 camera/source error,
5 display error. Each error is one line naming the problem and the fix.
"""

from __future__ import annotations

import argparse
import logging
import sys
from contextlib import ExitStack
from pathlib import Path

import cv2

from edge_fer import __version__
from edge_fer.capture import CaptureError, ReconnectingSource, make_source
from edge_fer.classify import ModelError, PteClassifier, load_classifier
from edge_fer.config import DEFAULT_CONFIG_PATH, Config, ConfigError, apply_overrides, load_config
from edge_fer.detect import DetectorError, make_detector
from edge_fer.display import DisplayError, make_display
from edge_fer.pipeline import Pipeline, Recorder, run
from edge_fer.service import Notifier, SignalState, setup_logging
from edge_fer.stats import RunStats, write_json_atomic

log = logging.getLogger("edge_fer")
EXIT_CONFIG, EXIT_MODEL, EXIT_SOURCE, EXIT_DISPLAY = 2, 3, 4, 5


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="edge-fer", description="Facial emotion recognition daemon.")
    p.add_argument("--config", type=Path, default=DEFAULT_CONFIG_PATH,
                   help=f"YAML config (default {DEFAULT_CONFIG_PATH}; defaults if it is absent)")
    p.add_argument("--source", help="auto | picamera2 | webcam[:INDEX] | file:PATH")
    p.add_argument("--display", choices=("auto", "drm", "window", "none"))
    p.add_argument("--model", help="model file (.pte, or a float .pt checkpoint)")
    p.add_argument("--detector", choices=("haar", "yunet"))
    p.add_argument("--yunet-model", help="YuNet .onnx file (with --detector yunet)")
    p.add_argument("--threads", type=int, help="classifier threads")
    p.add_argument("--runtime", choices=("auto", "native", "pybind"),
                   help="how the .pte is run (overrides model.runtime)")
    p.add_argument("--max-frames", type=int, help="stop after N frames")
    p.add_argument("--events-jsonl", help="write one JSON line per frame here ('-': stdout)")
    p.add_argument("--report-json", type=Path, help="write a run summary here at exit")
    p.add_argument("--stats-path", help="live stats JSON for edge-fer-monitor")
    p.add_argument("--no-loop", action="store_true", help="stop at the end of a video file")
    p.add_argument("--log-level", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    p.add_argument("--version", action="version", version=f"edge-fer {__version__}")
    args = p.parse_args(argv)
    if args.max_frames is not None and args.max_frames <= 0:
        p.error(f"--max-frames must be a positive integer, got {args.max_frames}")
    return args


def build_config(args: argparse.Namespace) -> Config:
    config = load_config(args.config)
    return apply_overrides(config, {
        "source": args.source, "display.mode": args.display, "model.path": args.model,
        "detector.kind": args.detector, "detector.yunet_model": args.yunet_model,
        "model.threads": args.threads, "model.runtime": args.runtime,
        "stats.path": args.stats_path,
        "log_level": args.log_level, "loop_video": False if args.no_loop else None,
    })


def run_once(config: Config, args: argparse.Namespace, signals: SignalState,
             notifier: Notifier, stats: RunStats) -> tuple[str, str]:
    """Open everything the config names, process frames, close. Returns (why, source name)."""
    with ExitStack() as stack:
        cv2.setNumThreads(config.model.threads)  # detection and resizing share the budget
        classifier = load_classifier(config.model.path, config.model.threads,
                                     config.model.runtime)
        if isinstance(classifier, PteClassifier):
            stack.callback(classifier.close)
            log.info("model %s (%s), %d thread(s), %s runtime", config.model.path,
                     classifier.metadata.get("name", "?"), config.model.threads,
                     classifier.runtime)
        detector = make_detector(config.detector)
        source = ReconnectingSource(make_source(config), config.reconnect_max_backoff_s,
                                    sleep=lambda s: signals.stop.wait(s))
        display = make_display(config.display.mode, source, classifier.classes,
                               config.display.fullscreen, config.display.top3)
        stack.callback(display.close)
        source.open()
        stack.callback(source.close)
        log.info("source %s, detector %s, display %s", source.name, detector.name, display.name)
        events = None
        if args.events_jsonl == "-":
            events = sys.stdout
        elif args.events_jsonl:
            events = stack.enter_context(open(args.events_jsonl, "a", buffering=1))
        recorder = None
        if config.record is not None:
            log.warning("recording the overlay video to %s (record is set)", config.record)
            recorder = Recorder(str(config.record), config.camera.fps)
            stack.callback(recorder.close)
        pipeline = Pipeline(config, detector, classifier)
        stats.new_tracker()  # its face ids start again from 1
        max_frames = args.max_frames
        why = run(pipeline, source, display, notifier, stats, signals.interrupted, max_frames,
                  events, recorder, lambda: source.reconnects)
        stats.bad_frames = max(stats.bad_frames, source.bad_frames)
        return why, source.name


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args.log_level or "INFO")
    try:
        config = build_config(args)
    except ConfigError as exc:
        log.error("config error: %s", exc)
        return EXIT_CONFIG
    setup_logging(config.log_level)
    signals = SignalState()
    signals.install()
    notifier = Notifier()
    stats = RunStats(config.stats.window_s)
    source_name = config.source
    code = 0
    try:
        while True:
            why, source_name = run_once(config, args, signals, notifier, stats)
            if not signals.reload.is_set() or signals.stop.is_set():
                break
            signals.reload.clear()
            notifier.reloading()
            try:
                config = build_config(args)
                setup_logging(config.log_level)
                log.info("config reloaded from %s", args.config)
            except ConfigError as exc:
                log.error("config reload failed, keeping the running config: %s", exc)
        log.info("stopped (%s) after %d frames", why, stats.frames)
    except ConfigError as exc:
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
    finally:
        notifier.stopping()
        if args.report_json is not None:
            write_json_atomic(args.report_json, stats.report(source_name))
        if config.stats.path is not None and Path(config.stats.path).exists():
            # A stopped daemon must not look alive to the monitor.
            Path(config.stats.path).unlink(missing_ok=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
