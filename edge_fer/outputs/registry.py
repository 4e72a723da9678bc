"""The outputs a config turns on.

Importing this module imports every output module (and the display), and each registers
its factory with the config section it reads (`edge_fer.outputs.registration`, which also
lists the order they see each frame in). To add an output, write a class with `name`,
`on_frame(result, stats)` and `close()`, register its factory in its module, and import the
module here. Tools that drive the daemon swap or add an output with `output_override`.
"""

from __future__ import annotations

from edge_fer.display import screen  # noqa: F401 - imported to register the display
from edge_fer.display.screen import DisplayError
from edge_fer.outputs import (  # noqa: F401 - imported to register their outputs
    console,
    events,
    mqtt,
    prometheus,
    recorder,
    run_report,
    stats_file,
    systemd,
    web,
)
from edge_fer.outputs.base import Output, OutputClosed, OutputContext, OutputError, PreviewHost
from edge_fer.outputs.registration import output_kinds, output_override


def build_outputs(ctx: OutputContext) -> list[Output]:
    """Every output the config turns on, in registration order. Raises OutputError /
    DisplayError for bad settings (the outputs built until then are closed again)."""
    outputs: list[Output] = []
    try:
        for kind in output_kinds():
            output = kind.factory(ctx, tuple(outputs))
            if output is not None:
                outputs.append(output)
    except BaseException:
        for output in outputs:
            output.close()
        raise
    return outputs


__all__ = [
    "DisplayError",
    "Output",
    "OutputClosed",
    "OutputContext",
    "OutputError",
    "PreviewHost",
    "build_outputs",
    "output_override",
]
