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
from dataclasses import dataclass
from typing import TYPE_CHECKING

from edge_fer import __version__
from edge_fer.core.exit_codes import ExitCode
from edge_fer.core.logs import ensure_std_streams, setup_logging
from edge_fer.core.memory import LowMemory, low_memory_as_one_line, run_guarded

# Only the standard library before the signal handlers are in place: everything else is
# imported inside main() (OpenCV and numpy take ~0.2 s, and a SIGHUP then would kill us).
from edge_fer.core.schema import Flag, add_flags, check_flags, flags, given, setting
from edge_fer.core.user_input import FlagParser, path_arg
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


@dataclass
class RunOptions:
    """Options of one daemon run that are not config keys."""

    max_frames: int | None = setting(None, "stop after N frames", ge=1, flag="--max-frames")


def build_parser() -> tuple[argparse.ArgumentParser, list[Flag], list[Flag]]:
    """The daemon's command line: --config, a flag per config key that declares one (the
    config's sections, `flag=`), --web [PORT], --max-frames, --version. Also returns the
    config keys' flags and the flags to check against their settings' limits once parsed."""
    from edge_fer.config import DEFAULT_CONFIG_PATH, Config, config_flags

    p = FlagParser(prog="edge-fer", description="Facial emotion recognition daemon.")
    p.add_argument(
        "--config",
        type=path_arg,
        default=DEFAULT_CONFIG_PATH,
        help=f"YAML config (default {DEFAULT_CONFIG_PATH}; defaults if it is absent)",
    )
    keys = config_flags(p.add_argument_group("config keys (each overrides the key in [brackets])"))
    # Two keys at once (web.enabled, and web.port when PORT is given), so written here; its
    # PORT has web.port's limits.
    p.add_argument(
        "--web",
        nargs="?",
        type=int,
        const=0,
        metavar="PORT",
        help="serve the live web page (on web.port, or PORT; 127.0.0.1 unless web.bind)",
    )
    web_port = Flag("web.port", "--web", "web", flags(Config, ["web.port"])[0].field)
    run = add_flags(p, RunOptions, show_key=False)
    p.add_argument("--version", action="version", version=f"edge-fer {__version__}")
    return p, keys, [*keys, web_port, *run]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The flags, each typed and within its setting's limits (else argparse's one-line error,
    exit 2)."""
    p, _, checked = build_parser()
    args = p.parse_args(argv)
    check_flags(p, args, [f for f in checked if not (f.dest == "web" and args.web == 0)])
    return args


def build_config(args: argparse.Namespace) -> Config:
    """The config file with the flags applied on top, its output paths checked against each
    other and against the files it reads."""
    from edge_fer.config import apply_overrides, check_output_paths, load_config

    overrides = given(args, build_parser()[1])
    if args.web is not None:  # --web: the page on; --web PORT: on that port
        overrides.update({"web.enabled": True, "web.port": args.web or None})
    config = apply_overrides(load_config(args.config), overrides)
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
