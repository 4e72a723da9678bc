"""The daemon's life: build the pipeline a config names, run it, reload on SIGHUP.

A reload builds and checks the new pipeline (config, model, detector, source, outputs)
before it drops the running one; if anything in the new config fails, the daemon logs why
and carries on with the config it had.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass

import cv2

from edge_fer.capture import CaptureError, ReconnectingSource, make_source
from edge_fer.classify import Classifier, ModelError, load_classifier
from edge_fer.config import Config, ConfigError, ModelConfig, flatten
from edge_fer.detect import DetectorError, FaceDetector, make_detector
from edge_fer.outputs import DisplayError, OutputContext, OutputError, build_outputs
from edge_fer.pipeline import Pipeline, run
from edge_fer.service import Notifier, SignalState, setup_logging
from edge_fer.stats import RunStats

log = logging.getLogger("edge_fer")


@dataclass
class Prepared:
    """What a config needs that takes time or can fail, made before anything is replaced."""

    config: Config
    classifier: Classifier
    detector: FaceDetector
    source: ReconnectingSource


def open_classifier(model: ModelConfig) -> Classifier:
    """The classifier a `model:` section names."""
    return load_classifier(model.file, model.threads, model.runtime)


def prepare(
    config: Config, signals: SignalState, stats: RunStats, classifier: Classifier | None = None
) -> Prepared:
    """Load the model (unless `classifier` is reused), the detector and the source."""
    cv2.setNumThreads(config.model.threads)  # detection and resizing share the budget
    own = classifier is None
    if classifier is None:
        classifier = open_classifier(config.model)
    try:
        detector = make_detector(config.detector)
        inner = make_source(
            config.source,
            config.camera,
            config.fallback_video,
            config.loop_video,
            config.stream,
            realtime=config.pace == "realtime",
        )
        source = ReconnectingSource(
            inner,
            config.reconnect_max_backoff_s,
            wait=signals.stop.wait,
            should_stop=signals.stop.is_set,
            on_reconnect=stats.count_reconnect,
        )
    except BaseException:
        if own:
            classifier.close()
        raise
    return Prepared(config, classifier, detector, source)


def serve(
    p: Prepared, signals: SignalState, notifier: Notifier, stats: RunStats, max_frames: int | None
) -> str:
    """Open the outputs and the source, process frames until a stop, reload or the end."""
    with ExitStack() as stack:
        ctx = OutputContext(
            p.config,
            p.classifier.classes,
            notifier,
            p.source.preview_host(),
            p.source.name,
            stats,
            p.classifier.info(),
        )
        outputs = build_outputs(ctx)  # before the source opens: the DRM preview starts with it
        for output in reversed(outputs):
            stack.callback(output.close)
        p.source.open()
        stack.callback(p.source.close)
        stats.source = p.source.name
        stats.new_tracker()  # face ids start again from 1
        names = [o.name for o in outputs]
        display = next((n for n in names if n in ("drm", "window")), "none")
        model = ctx.model_info
        log.info(
            "source %s, detector %s, display %s, model %s (%s), %s runtime, %s thread(s), outputs: %s",
            p.source.name,
            p.detector.name,
            display,
            model["file"],
            model["name"],
            model["runtime"],
            model["threads"],
            ", ".join(names),
        )
        pipeline = Pipeline(
            p.detector, p.classifier, p.config.detector, p.config.tracker, p.config.smoothing, stats.run_id
        )
        return run(p.source, pipeline, outputs, signals.interrupted, stats, max_frames)


def config_changes(old: Config, new: Config) -> list[str]:
    """'key: old -> new' for every setting that differs."""
    a, b = flatten(old), flatten(new)
    return [f"{k}: {a[k]} -> {b[k]}" for k in a if a[k] != b[k]]


def _reload(current: Prepared, load: Callable[[], Config], signals: SignalState, stats: RunStats) -> Prepared:
    """The pipeline of the re-read config, or `current` (logged) if any part of it fails."""
    try:
        config = load()
    except ConfigError as exc:
        log.error("config reload failed, keeping the running config: %s", exc)
        return current
    changes = config_changes(current.config, config)
    same_model = config.model == current.config.model
    if not same_model:
        current.classifier.close()  # the runtime's thread pool allows one program size at a time
    try:
        new = prepare(config, signals, stats, current.classifier if same_model else None)
    except (ModelError, DetectorError, CaptureError) as exc:
        log.error("config reload failed, keeping the running config: %s", exc)
        if not same_model:
            current.classifier = open_classifier(current.config.model)
        return current
    setup_logging(config.log_level)
    log.info("config reloaded: %s", "; ".join(changes) if changes else "nothing changed")
    return new


def run_daemon(
    config: Config,
    load_config: Callable[[], Config],
    signals: SignalState,
    notifier: Notifier,
    stats: RunStats,
    max_frames: int | None,
) -> str:
    """Serve until a stop; SIGHUP re-reads the config with `load_config`. Returns why it stopped.
    Start-up errors propagate (the CLI maps them to exit codes); after a reload, a pipeline
    that fails to start falls back to the previous one."""
    current = prepare(config, signals, stats)
    previous: Prepared | None = None
    try:
        while True:
            try:
                why = serve(current, signals, notifier, stats, max_frames)
            except (CaptureError, DisplayError, OutputError) as exc:
                if previous is None:
                    raise
                log.error("config reload failed, keeping the running config: %s", exc)
                if current.classifier is not previous.classifier:
                    current.classifier.close()
                    previous.classifier = open_classifier(previous.config.model)
                current, previous = previous, None
                continue
            if not signals.reload.is_set() or signals.stop.is_set():
                return why
            signals.reload.clear()
            notifier.reloading()
            new = _reload(current, load_config, signals, stats)
            previous = current if new is not current else None
            current = new
    finally:
        current.classifier.close()
