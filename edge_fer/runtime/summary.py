"""What the daemon says about its results in words: the one place that words them.

Headless (systemd's journal, nohup, a log file) the log gets a first summary a few seconds
after the first frame, then one every `log_summary_s`, and a final one when the daemon stops,
whatever stopped it (`outputs.console.LogSummary` schedules them, the CLI logs the last):

    first 3 s: 87 frames, 29.4 fps | 2 faces seen (2 new), a face in 96% of frames |
    happy 61%, neutral 27%, sad 12% | now #3 happy 0.91, #4 neutral 0.55 | detect 14.2 ms
    (1/2 frames), classify 0.31 ms
    stopped (signal) after 62.3 s: 1799 frames, 29.9 fps | 7 faces seen, a face in 96% of
    frames | happy 61%, neutral 27%, sad 12% over 1731 face-frames

On a terminal `status_line` is printed once a second instead. A rate is only ever shown over
a real interval (two frames at different times): before that the fps is left out, never
`0.0 fps`. Label shares are over the face-frames (one face in one frame) of the span;
`faces seen` counts people: a face that leaves and comes back, or someone else stepping into
a face's place, is a new face (`edge_fer.faces.track`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edge_fer.runtime.results import FrameResult
from edge_fer.runtime.stats import Tally, detection_rate

if TYPE_CHECKING:
    from edge_fer.runtime.stats import RunStats

# The first summary comes this soon after the first frame (or after one log_summary_s if
# that is shorter), so a run without a terminal shows it works within seconds.
FIRST_SUMMARY_S = 3.0


def fps_text(rate: float | None) -> str | None:
    """'29.9 fps', or None while no interval gives a rate."""
    return f"{rate:.1f} fps" if rate is not None else None


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def faces_now(result: FrameResult) -> list[str]:
    """'#3 happy 0.91' for each face of the frame."""
    return [f"#{f.id} {f.smoothed} {f.smoothed_score:.2f}" for f in result.faces]


def stage_times(stats: RunStats, seconds: float | None) -> str:
    """'detect 14.2 ms (1/2 frames), classify 0.31 ms' over the last `seconds` (the window)."""
    p = stats.latency.window_percentiles(seconds)
    rate = detection_rate(*stats.latency.window_detection_frames(seconds))
    return f"detect {p['detect']['p50']:.1f} ms ({rate}), classify {p['classify']['p50']:.2f} ms"


def status_line(result: FrameResult, stats: RunStats) -> str:
    """The console's line for the latest frame: fps and stage times over the last second."""
    seconds = min(1.0, stats.latency.window_s)
    fps = fps_text(stats.latency.rate(seconds))
    faces = plural(len(result.faces), "face")
    times = stage_times(stats, seconds).replace(", classify", " | classify")
    return " | ".join([p for p in (fps, faces) if p] + faces_now(result) + [times])


def label_shares(labels: dict[str, int]) -> str | None:
    """'happy 61%, neutral 27%' (most common first), or None with no labelled face."""
    total = sum(labels.values())
    if not total:
        return None
    ordered = sorted(labels.items(), key=lambda kv: -kv[1])
    return ", ".join(f"{k} {_percent(100 * n / total)}" for k, n in ordered if n > 0)


def _percent(value: float) -> str:
    return f"{value:.0f}%" if value >= 0.5 else "<1%"  # seen, if rarely: never "0%"


def _span(frames: int, with_faces: int, rate: float | None) -> list[str]:
    head = ", ".join(p for p in (plural(frames, "frame"), fps_text(rate)) if p)
    share = f"a face in {100 * with_faces / frames:.0f}% of frames" if frames else ""
    return [head, share]


def interval_line(
    title: str, before: Tally, rate_from: Tally, now: Tally, result: FrameResult, stats: RunStats
) -> str:
    """The periodic summary: what happened between `before` and `now` (the fps over the frames
    after `rate_from`'s last one), the faces in the latest frame and the stage times."""
    frames = now.frames - before.frames
    gap = now.last_frame_mono - rate_from.last_frame_mono
    rate = (now.frames - rate_from.frames) / gap if gap > 0 and now.frames > rate_from.frames else None
    head, share = _span(frames, now.frames_with_faces - before.frames_with_faces, rate)
    new = now.faces_seen - before.faces_seen
    parts = [f"{title}: {head}", f"{plural(now.faces_seen, 'face')} seen ({new} new), {share}"]
    shares = label_shares(now.labels - before.labels)
    if shares:
        parts.append(shares)
    current = faces_now(result)
    parts.append("now " + ", ".join(current) if current else "no face now")
    parts.append(stage_times(stats, None))
    return " | ".join(parts)


def final_line(stats: RunStats, why: str, elapsed_s: float) -> str:
    """The summary of the whole run, logged when the daemon stops (`why`: signal, max_frames,
    eos, closed or error)."""
    start = f"stopped ({why}) after {elapsed_s:.1f} s"
    if stats.frames == 0:
        return f"{start}, before the first frame"
    head, share = _span(stats.frames, stats.frames_with_faces, stats.frame_rate())
    parts = [f"{start}: {head}", f"{plural(stats.faces_seen, 'face')} seen, {share}"]
    shares = label_shares(stats.labels)
    if shares:
        parts.append(f"{shares} over {plural(sum(stats.labels.values()), 'face-frame')}")
    trouble = [
        plural(n, what)
        for n, what in ((stats.bad_frames, "dropped frame"), (stats.reconnects, "reconnect"))
        if n
    ]
    if trouble:
        parts.append(", ".join(trouble))
    return " | ".join(parts)
