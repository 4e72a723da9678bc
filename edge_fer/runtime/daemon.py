"""The daemon's life: build the pipeline a config names, run it, reload on SIGHUP.

Building a pipeline is one transaction, the same at start-up and on a reload: read and
validate the config, lock the stats path, load and accept the model (`load_classifier`
probes it), make the detector, build the outputs, open the source and probe it (it must give
frames). It runs in a worker thread while the main thread keeps answering signals: SIGTERM
ends the daemon at any point of it, and a reload that fails anywhere, or takes longer than
`reload_timeout_s`, is logged and the running pipeline is put back.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import cv2

from edge_fer.config import Config, ConfigError, ModelConfig, flatten
from edge_fer.core.logs import setup_logging
from edge_fer.core.safe_io import LockHeld, PathLock, PathRefused
from edge_fer.display.screen import DisplayError
from edge_fer.emotions.classifier import Classifier, ModelError, load_classifier
from edge_fer.faces.detect import DetectorError, make_detector
from edge_fer.faces.finder import FaceFinder
from edge_fer.outputs.base import Output, OutputContext, OutputError
from edge_fer.outputs.registry import build_outputs
from edge_fer.runtime.pipeline import Pipeline, run
from edge_fer.runtime.service import Notifier, SignalState
from edge_fer.runtime.stats import RunStats
from edge_fer.runtime.summary import fps_text
from edge_fer.sources.base import CaptureError, EndOfStream
from edge_fer.sources.reconnect import ReconnectingSource
from edge_fer.sources.registry import source_from_config

log = logging.getLogger("edge_fer")

PROBE_FRAMES = 3  # a new source must give this many frames (a video must be able to loop)
PROBE_DEADLINE_S = 10.0
PROBE_DROPPED = 30  # frames in a row the frame check dropped: the source's frames are unusable
# What a failed build may raise; anything else is a bug, but is still caught and logged.
BUILD_ERRORS = (ConfigError, ModelError, DetectorError, CaptureError, OutputError, DisplayError)


class Stopped(Exception):  # noqa: N818 - a request, not an error
    """SIGTERM arrived while a pipeline was being built."""


@dataclass
class Prepared:
    """A pipeline ready to run: model, detector, source (open and probed) and outputs."""

    config: Config
    classifier: Classifier
    detector: FaceFinder
    source: ReconnectingSource
    outputs: list[Output] = field(default_factory=list)
    lock: PathLock | None = None
    model_info: dict[str, str] = field(default_factory=dict)

    def close(self, keep_classifier: bool = False) -> None:
        """Close the outputs and the source (and the classifier unless kept)."""
        for output in reversed(self.outputs):
            try:
                output.close()
            except Exception as exc:  # noqa: BLE001 - closing one must not stop the others
                log.warning("closing output %s failed: %s", getattr(output, "name", output), exc)
        self.outputs = []
        try:
            self.source.close()
        except Exception as exc:  # noqa: BLE001
            log.warning("closing source %s failed: %s", self.source.name, exc)
        if not keep_classifier:
            self.classifier.close()


def open_classifier(model: ModelConfig) -> Classifier:
    """The classifier a `model:` section names (loaded and accepted, or ModelError)."""
    return load_classifier(model.file, model.threads, model.runtime)


def stats_lock(config: Config, held: PathLock | None) -> PathLock | None:
    """The lock on the config's stats path (`held` when it is the same path). Another
    daemon on that path is an OutputError; a folder we cannot make a lock in only a warning
    (the stats output then reports its own error)."""
    path = config.stats.path
    if path is None:
        return None
    if held is not None and held.path == path:
        return held
    lock = PathLock(path)
    try:
        lock.acquire()
    except LockHeld as exc:
        raise OutputError(
            f"stats: {exc}; give each daemon its own stats.path (--stats-path or --instance), "
            "or stop the other one"
        ) from None
    except (OSError, PathRefused) as exc:
        log.warning("stats: cannot lock %s (%s); not guarding it against a second daemon", path, exc)
        return None
    return lock


def probe_source(source: ReconnectingSource, loop: bool, deadline_s: float = PROBE_DEADLINE_S) -> None:
    """Read a few frames from a just-opened source: CaptureError unless it gives
    PROBE_FRAMES good frames (or ends cleanly after one, with looping off) in time."""
    inner = source.source  # no reconnecting here: a source that fails now is refused
    good = dropped = 0
    end = time.monotonic() + deadline_s
    while good < PROBE_FRAMES:
        check = getattr(inner, "check", None)
        why = getattr(check, "last", "")
        # Frames the frame check drops (a 2000x2 video) fail the probe at once, saying why.
        if time.monotonic() > end or (why and dropped >= PROBE_DROPPED):
            if why and dropped >= PROBE_DROPPED:
                raise CaptureError(f"source {source.name} gives no usable frames ({why}); check it works")
            raise CaptureError(
                f"source {source.name} gave {good} frame(s) in {deadline_s:.0f} s; check it works"
            )
        try:
            frame = inner.read()
        except EndOfStream:
            if good and not loop:
                return
            raise CaptureError(f"source {source.name} ended after {good} frame(s); it has too few") from None
        except CaptureError:
            raise
        except Exception as exc:  # noqa: BLE001 - a driver error is the source's failure
            raise CaptureError(f"source {source.name} failed when first read ({exc})") from None
        good += frame is not None
        dropped = 0 if frame is not None else dropped + 1
    if getattr(inner, "is_file", False):  # start the video from its first frame again
        inner.close()
        inner.open()


def _make_source(config: Config, signals: SignalState, stats: RunStats) -> ReconnectingSource:
    inner = source_from_config(config)
    return ReconnectingSource(
        inner,
        config.reconnect_max_backoff_s,
        wait=signals.stop.wait,
        should_stop=signals.stop.is_set,
        on_reconnect=stats.count_reconnect,
    )


def prepare(
    config: Config,
    signals: SignalState,
    stats: RunStats,
    notifier: Notifier,
    classifier: Classifier | None = None,
    lock: PathLock | None = None,
) -> Prepared:
    """Build everything `config` needs (reusing `classifier` and `lock` when given), open and
    probe the source. On any failure what was built here is closed again and the error
    raised."""
    cv2.setNumThreads(config.model.threads)  # detection and resizing share the budget
    own_classifier = classifier is None
    new_lock = stats_lock(config, lock)
    own_lock = new_lock is not None and new_lock is not lock
    p: Prepared | None = None
    try:
        if classifier is None:
            classifier = open_classifier(config.model)
        detector = FaceFinder(lambda: make_detector(config.detector), config.detector)
        source = _make_source(config, signals, stats)
        p = Prepared(config, classifier, detector, source, lock=new_lock, model_info=classifier.info())
        # The source first: a build that stalls opening a camera then holds no port, file or
        # connection the running pipeline needs back (a DRM preview restarts the open camera).
        source.open()
        probe_source(source, config.loop_video)
        ctx = OutputContext(
            config, classifier.classes, notifier, source.preview_host(), source.name, stats, p.model_info
        )
        p.outputs = build_outputs(ctx)
    except BaseException:
        if p is not None:
            p.close(keep_classifier=True)
        if own_classifier and classifier is not None:
            classifier.close()
        if own_lock:
            new_lock.release()
        raise
    return p


def in_worker(
    build: Callable[[], Prepared],
    signals: SignalState,
    deadline_s: float | None,
    discard: Callable[[Prepared], None] = lambda p: p.close(),
) -> Prepared:
    """Run `build` in a thread while this (the main) thread keeps handling signals. Raises
    Stopped on SIGTERM, TimeoutError past the deadline (what the build makes after that is
    handed to `discard` when it finishes), or whatever the build raised."""
    box: dict[str, object] = {}
    done = threading.Event()
    abandoned = threading.Event()
    handoff = threading.Lock()  # the worker either hands its outcome over or disposes of it

    def work() -> None:
        outcome: dict[str, object] = {}
        try:
            outcome["result"] = build()
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            outcome["error"] = exc
        with handoff:
            late = abandoned.is_set()
            if not late:
                box.update(outcome)
                outcome.clear()  # the error's traceback holds this frame: no cycle through it
                done.set()
        if late:
            # Nobody reads it: dispose of it here. The error's traceback holds the frames of
            # the failed build (its closed pipeline, detector, the old pipeline by closure),
            # so it is dropped at once rather than left in a reference cycle for the garbage
            # collector: every abandoned reload would otherwise keep megabytes alive.
            result = outcome.pop("result", None)
            error = outcome.pop("error", None)
            if isinstance(error, BaseException):
                error.__traceback__ = None
            del error
            if isinstance(result, Prepared):
                discard(result)
            del result

    def abandon() -> bool:
        """Give the build up unless it has just finished (then its outcome is ours)."""
        with handoff:
            if done.is_set():
                return False
            abandoned.set()
            return True

    threading.Thread(target=work, name="edge-fer-build", daemon=True).start()
    end = None if deadline_s is None else time.monotonic() + deadline_s
    while not done.wait(0.05):
        # Raised unbound: a local holding the exception would put this frame (and `build`,
        # which can hold the old pipeline) in a cycle with its traceback.
        if signals.stop.is_set() and abandon():
            raise Stopped()
        if end is not None and time.monotonic() > end and abandon():
            raise TimeoutError(f"building the new pipeline took longer than {deadline_s:.0f} s")
    # Popped, not read: the box must not keep the error (whose traceback holds the worker's
    # frame, which holds the box) or the pipeline alive after this returns.
    if "error" in box:
        raise box.pop("error")  # type: ignore[misc]
    return box.pop("result")  # type: ignore[return-value]


def serve(p: Prepared, signals: SignalState, stats: RunStats, max_frames: int | None) -> str:
    """Process frames through a prepared pipeline until a stop, a reload or the end."""
    stats.source = p.source.name
    stats.new_tracker()  # face ids start again from 1
    names = [o.name for o in p.outputs]
    display = next((n for n in names if n in ("drm", "window")), "none")
    model = p.model_info
    log.info(
        "source %s, detector %s, display %s, model %s (%s), %s runtime, %s thread(s), outputs: %s",
        p.source.name,
        p.detector.name,
        display,
        model.get("file"),
        model.get("name"),
        model.get("runtime"),
        model.get("threads"),
        ", ".join(names),
    )
    pipeline = Pipeline(
        p.detector, p.classifier, p.config.detector, p.config.tracker, p.config.smoothing, stats.run_id
    )
    return run(p.source, pipeline, p.outputs, signals.interrupted, stats, max_frames)


def config_changes(old: Config, new: Config) -> list[str]:
    """'key: old -> new' for every setting that differs."""
    a, b = flatten(old), flatten(new)
    return [f"{k}: {a[k]} -> {b[k]}" for k in a if a[k] != b.get(k)]


def status_line(stats: RunStats, current: Prepared | None) -> str:
    """The line SIGUSR1/SIGUSR2 log."""
    where = f"source {current.source.name}, " if current is not None else "starting, "
    fps = fps_text(stats.latency.rate())
    return (
        f"{where}{stats.frames} frames, {fps + ', ' if fps else ''}{stats.faces_now} faces, "
        f"{stats.faces_seen} seen, {stats.bad_frames} dropped, {stats.reconnects} reconnects, "
        f"run {stats.run_id}"
    )


def _reload(
    current: Prepared,
    load: Callable[[], Config],
    signals: SignalState,
    notifier: Notifier,
    stats: RunStats,
    deadline_s: float,
) -> Prepared:
    """The pipeline of the re-read config, or the running one rebuilt (logged) if any part of
    the new one fails or is too slow. `current` has been closed except for its classifier."""
    new_model: list[bool] = []

    def build() -> Prepared:
        config = load()
        same_model = config.model == current.config.model
        if not same_model:
            new_model.append(True)
            current.classifier.close()  # the runtime's thread pool allows one program size at a time
        return prepare(
            config, signals, stats, notifier, current.classifier if same_model else None, current.lock
        )

    def discard(late: Prepared) -> None:  # a build that finished after its deadline
        late.close(keep_classifier=late.classifier is current.classifier)
        if late.lock is not None and late.lock is not current.lock:
            late.lock.release()

    try:
        new: Prepared | None = in_worker(build, signals, deadline_s, discard)
    except Stopped:
        raise
    except BaseException as exc:  # noqa: BLE001 - any failure keeps the running config
        known = isinstance(exc, (*BUILD_ERRORS, TimeoutError))
        log.error(
            "config reload failed, keeping the running config: %s",
            exc if known else f"{type(exc).__name__}: {exc}",
        )
        log.debug("reload failure", exc_info=exc)
        new = None
    if new is None:
        # Restored outside the except block: the failure (its traceback holds the failed
        # build's frames and what they made) is gone before the old pipeline is rebuilt.
        classifier = None if new_model else current.classifier
        old = current.config
        try:
            # No deadline here: an abandoned build can hold what the old pipeline needs (OpenCV
            # opens one capture at a time, so a stalled stream open delays the old camera by up
            # to stream.open_timeout_s). SIGTERM still ends the wait; a restore that never
            # finishes stops the frames, so the watchdog restarts the service.
            return in_worker(
                lambda: prepare(old, signals, stats, notifier, classifier, current.lock),
                signals,
                None,
                discard,
            )
        except (Stopped, *BUILD_ERRORS):
            raise
        except BaseException as again:  # noqa: BLE001
            raise CaptureError(
                f"the running pipeline could not be restarted after a failed reload: {again}"
            ) from None
    if new.lock is not current.lock and current.lock is not None:
        current.lock.release()
    setup_logging(new.config.log_level)
    changes = config_changes(current.config, new.config)
    log.info("config reloaded: %s", "; ".join(changes) if changes else "nothing changed")
    return new


def run_daemon(
    config: Config,
    load_config: Callable[[], Config],
    signals: SignalState,
    notifier: Notifier,
    stats: RunStats,
    max_frames: int | None,
    reload_deadline_s: float | None = None,
) -> str:
    """Serve until a stop; SIGHUP re-reads the config with `load_config`. Returns why it stopped.
    Start-up errors propagate (the CLI maps them to exit codes); a reload that fails keeps
    the running config."""
    current: Prepared | None = None
    signals.describe = lambda: status_line(stats, current)
    try:
        current = in_worker(lambda: prepare(config, signals, stats, notifier), signals, None)
    except Stopped:
        return "signal"
    try:
        while True:
            try:
                why = serve(current, signals, stats, max_frames)
            finally:
                current.close(keep_classifier=True)
            if not signals.reload.is_set() or signals.stop.is_set():
                return why
            signals.reload.clear()
            notifier.reloading()
            try:
                deadline = reload_deadline_s or current.config.reload_timeout_s
                current = _reload(current, load_config, signals, notifier, stats, deadline)
            except Stopped:
                return "signal"
    finally:
        if current is not None:
            current.classifier.close()
            if current.lock is not None:
                current.lock.release()
