"""How an output module makes itself known: `@register_output(name, section, order)` on a
factory that reads its config section and returns the output, or None when it is off.

This module imports nothing from the outputs, so every output module (and the display) can
import it; `edge_fer.outputs.registry` imports the output modules, which fills the table, and
builds what a config turns on. Outputs see each frame in `order` (lowest first):

====  =========  =====================================================
10    display    the screen first (`display`)
20    recorder   then files: the annotated video (`record`)
30    events     the JSON-lines log (`events`)
40    stats      the live stats file (`stats`)
50    systemd    the unit's status line (`stats.interval_s`)
60    report     the end-of-run report (`report`)
70    mqtt       then the network: MQTT / Home Assistant (`mqtt`)
80    metrics    the Prometheus endpoint (`metrics`)
90    web        the web page (`web`)
100   console    last: the terminal status line or the log summary (`console`)
====  =========  =====================================================
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edge_fer.outputs.base import Output, OutputContext

# A factory sees the context and the outputs built before it (the console asks whether a
# screen shows the frames); it returns its output, or None when the config leaves it off.
Factory = Callable[["OutputContext", Sequence["Output"]], "Output | None"]


@dataclass(frozen=True)
class OutputKind:
    """A registered output: its name, the config section it reads, its place in the frame's
    round of outputs, and its factory."""

    name: str
    section: str
    order: int
    factory: Factory


# Filled by the output modules as they are imported (edge_fer.outputs.registry imports them).
_OUTPUTS: dict[str, OutputKind] = {}


def register_output(name: str, section: str, order: int) -> Callable[[Factory], Factory]:
    """Decorator: `factory` builds the output `name` from config section `section`, seeing
    each frame at position `order`. A name or order taken by another output is a bug."""

    def register(factory: Factory) -> Factory:
        kind = OutputKind(name, section, order, factory)
        for other in _OUTPUTS.values():
            if other.name != name and other.order == order:
                raise ValueError(f"outputs {other.name!r} and {name!r} both registered at order {order}")
        if name in _OUTPUTS and _OUTPUTS[name].factory is not factory:
            raise ValueError(f"output {name!r} is registered twice")
        _OUTPUTS[name] = kind
        return factory

    return register


def output_kinds() -> tuple[OutputKind, ...]:
    """Every registered output, in the order they see each frame."""
    return tuple(sorted(_OUTPUTS.values(), key=lambda k: k.order))


@contextlib.contextmanager
def output_override(
    name: str, factory: Factory, section: str = "", order: int | None = None
) -> Iterator[None]:
    """Within the block, `name` is built by `factory`: a registered output replaced at its
    place, or a new one at `order` (tools that drive the daemon: screenshots, a screen grab)."""
    before = _OUTPUTS.get(name)
    if before is None and order is None:
        raise ValueError(f"output {name!r} is not registered; give the new one an order")
    _OUTPUTS[name] = OutputKind(
        name,
        section or (before.section if before else name),
        order if order is not None else before.order,  # type: ignore[union-attr]
        factory,
    )
    try:
        yield
    finally:
        if before is None:
            del _OUTPUTS[name]
        else:
            _OUTPUTS[name] = before
