"""One declarative settings schema: each setting is declared once, and everything else is made
from that declaration.

A setting is a dataclass field made by `setting(default, doc, ge=..., choices=..., flag=...)`.
Its `Spec` (type from the annotation; default, limits, choices, one-line doc, command-line flag)
gives:

- `coerce`: a YAML value (config file, recipe) typed as the annotation says;
- `parse_text`: a flag's text typed the same way (comma lists for `tuple[X, ...]`);
- `check`: limits and choices, each failure one line naming the setting, the value and what is
  allowed (`expected ...` for file keys, `must be ...` for flags);
- `add_flags`, `check_flags`, `given`: argparse flags for the settings that declare one,
  typed and limit-checked, and the values given;
- `example_yaml`: the documented example file, every key with its default, doc and limits.

The daemon config (`edge_fer.config`) and the training settings (`edge_fer.training.settings`)
both declare their fields here; each raises its own error type (a `SchemaError`). Only the
standard library is imported at the top: the daemon's command line uses it before its signal
handlers are in place.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import re
import reprlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_fer.core.safe_io import PathRefused, check_text
from edge_fer.core.user_input import InputRefused, path_arg, user_path
from edge_fer.core.user_input import shown as shown_input


class SchemaError(ValueError):
    """A value a setting does not allow; the one-line message names the setting and the fix."""


_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 80
_REPR.maxlevel = 3


def shown(value: Any) -> str:
    """A short repr for error messages (long strings, huge ints and deep lists cut)."""
    try:
        return _REPR.repr(value)
    except Exception:  # noqa: BLE001 - e.g. ints past Python's digit limit
        return f"<{type(value).__name__}>"


class _NoExample:
    def __repr__(self) -> str:
        return "NO_EXAMPLE"


NO_EXAMPLE: Any = _NoExample()  # the example file shows the default


def _num(bound: float) -> str:
    """A limit as written: 33177600, not 3.31776e+07; 0.05 and 1e-06 as %g writes them."""
    return str(int(bound)) if float(bound).is_integer() and abs(bound) < 1e16 else f"{bound:g}"


@dataclass(frozen=True)
class Spec:
    """What one setting allows and how it is documented (the field's metadata)."""

    doc: str = ""
    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None
    choices: tuple[str, ...] | None = None
    example: Any = NO_EXAMPLE  # shown in the example file instead of the default
    flag: str | None = None  # the command-line flag that sets it, e.g. "--display"
    flag_help: str | None = None  # the flag's help when it says more than `doc`
    metavar: str | None = None

    @property
    def has_limits(self) -> bool:
        return any(v is not None for v in (self.gt, self.ge, self.lt, self.le))

    def allows(self, value: Any) -> bool:
        """Within the choices and limits (a value limits do not apply to passes)."""
        if self.choices is not None and value not in self.choices:
            return False
        if value is None or isinstance(value, bool) or not isinstance(value, int | float):
            return True
        return (
            (self.gt is None or value > self.gt)
            and (self.ge is None or value >= self.ge)
            and (self.lt is None or value < self.lt)
            and (self.le is None or value <= self.le)
        )

    def expected(self) -> str:
        """What the limits allow as a noun phrase: 'a positive number', 'a number between 0
        and 1', 'a number >= 0.05 and <= 3600', 'one of tcp, udp'."""
        if self.choices is not None:
            return "one of " + ", ".join(self.choices)
        if self.gt == 0 and self.lt == 1:
            return "a number between 0 and 1"
        parts, lower = [], ""
        if self.gt == 0 or self.ge == 1:
            lower = "a positive number"
        for op, sym in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")):
            bound = getattr(self, op)
            if bound is not None and not (lower and op in ("gt", "ge")):
                parts.append(f"{sym} {_num(bound)}")
        if lower:
            return lower + (f" up to {_num(self.le)}" if self.le is not None else "")
        return "a number " + " and ".join(parts)

    def must_be(self, integer: bool = False) -> str:
        """What the limits allow after 'must be', as flags say it: 'one of a, b', 'in [0, 1]',
        'between 1 and 16' (integers), 'positive', '0 or more'..."""
        if self.choices:
            return "one of " + ", ".join(self.choices)
        low = ("[", self.ge) if self.ge is not None else ("(", self.gt) if self.gt is not None else None
        high = ("]", self.le) if self.le is not None else (")", self.lt) if self.lt is not None else None
        if integer and low == ("[", 1) and high is None:
            return "a positive integer"
        if integer and low and high and low[0] == "[" and high[0] == "]":
            return f"between {_num(low[1])} and {_num(high[1])}"
        if low == ("(", 0) and high and high != ("]", 1):  # fractions read as (0, 1]
            return (
                f"positive, at most {_num(high[1])}" if high[0] == "]" else f"positive, below {_num(high[1])}"
            )
        if low and high:
            return f"in {low[0]}{_num(low[1])}, {_num(high[1])}{high[0]}"
        if low:
            if low[1] == 0:
                return "positive" if low[0] == "(" else "0 or more"
            return f"at least {_num(low[1])}" if low[0] == "[" else f"more than {_num(low[1])}"
        if high:
            return f"at most {_num(high[1])}" if high[0] == "]" else f"less than {_num(high[1])}"
        return "valid"


def setting(
    default: Any = None,
    doc: str = "",
    *,
    factory: Any = None,
    gt: float | None = None,
    ge: float | None = None,
    lt: float | None = None,
    le: float | None = None,
    choices: tuple[str, ...] | None = None,
    example: Any = NO_EXAMPLE,
    flag: str | None = None,
    flag_help: str | None = None,
    metavar: str | None = None,
) -> Any:
    """A declared setting: a dataclass field with its `Spec` (a section when `factory` is a
    dataclass)."""
    declared = Spec(doc, gt, ge, lt, le, choices, example, flag, flag_help, metavar)
    # The Spec, and its values by name (field.metadata["ge"]) for code that reads them directly.
    meta = {**{f.name: getattr(declared, f.name) for f in dataclasses.fields(Spec)}, "spec": declared}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


def spec(f: dataclasses.Field) -> Spec:
    """The declaration of a field made by `setting` (an undeclared field allows anything)."""
    return f.metadata.get("spec", Spec())


def is_section(f: dataclasses.Field) -> bool:
    """A field holding a nested group of settings (a dataclass made by its factory)."""
    return f.default_factory is not dataclasses.MISSING and dataclasses.is_dataclass(f.default_factory)


def field_at(cls: type, dotted: str) -> dataclasses.Field:
    """The field of `cls` at a dotted key such as 'display.mode'; KeyError if there is none."""
    *parents, leaf = dotted.split(".")
    for name in parents:
        cls = _fields(cls)[name].default_factory
    return _fields(cls)[leaf]


def _fields(cls: type) -> dict[str, dataclasses.Field]:
    try:
        return {f.name: f for f in dataclasses.fields(cls)}
    except TypeError:
        raise KeyError(cls) from None


def walk(obj: Any, prefix: str = "") -> list[tuple[str, Any, dataclasses.Field]]:
    """(dotted key, value, field) of every setting in `obj`, sections flattened in order."""
    out = []
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if is_section(f):
            out += walk(value, f"{prefix}{f.name}.")
        else:
            out.append((prefix + f.name, value, f))
    return out


def with_values(obj: Any, values: dict[str, Any]) -> Any:
    """A copy of `obj` with dotted keys set (sections copied, never changed in place)."""
    grouped: dict[str, dict[str, Any]] = {}
    own: dict[str, Any] = {}
    for dotted, value in values.items():
        head, _, rest = dotted.partition(".")
        if rest:
            grouped.setdefault(head, {})[rest] = value
        else:
            own[head] = value
    for head, inner in grouped.items():
        own[head] = with_values(getattr(obj, head), inner)
    return dataclasses.replace(obj, **own)


def base_type(annotation: str) -> str:
    """'int' for 'int | None' (annotations are strings: `from __future__ import annotations`)."""
    return str(annotation).replace(" | None", "")


def element_type(annotation: str) -> str | None:
    """'int' for 'tuple[int, ...]', None for any other annotation."""
    match = re.fullmatch(r"tuple\[(\w+), \.\.\.\](?: \| None)?", str(annotation))
    return match.group(1) if match else None


def _where(label: str) -> str:
    return label if label.startswith("--") else f"{label}:"


def checked_path(label: str, value: str | Path, error: type[SchemaError] = SchemaError) -> Path:
    """A path through the user-input boundary (`user_path`): `~` expanded safely, UTF-8, no
    control characters, within the OS's length limits."""
    try:
        return user_path(value, _where(label))
    except InputRefused as exc:
        raise error(str(exc)) from None


def coerce(label: str, value: Any, annotation: str, error: type[SchemaError] = SchemaError) -> Any:
    """A YAML value as the annotation's type ('int', 'float | None', 'Path', 'tuple[int, int]',
    'str', 'bool'); `error` names `label` (e.g. "config key 'smoothing.window'")."""

    def bad(allowed: str) -> SchemaError:
        return error(f"{label}: {shown(value)} is not valid; expected {allowed}")

    annotation = str(annotation)
    if value is None and "None" in annotation:
        return None
    # A None where a value is required fails the type's own check below, in its own words.
    base = base_type(annotation)
    if base == "bool":
        if not isinstance(value, bool):
            raise bad("true or false")
        return value
    if base == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad("an integer")
        return value
    if base == "float":
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise bad("a finite number")
        return float(value)
    if base == "str":
        if not isinstance(value, str) or value == "":
            raise bad("a non-empty string")
        try:
            check_text(value)  # every string here reaches C libraries, topics or log lines
        except PathRefused as exc:
            reason = str(exc).replace("the path", "it")
            raise error(f"{label}: {shown_input(value)} is not valid: {reason}") from None
        return value
    if base == "Path":
        if not isinstance(value, str | Path) or str(value) == "" or "\0" in str(value):
            raise bad("a file path")
        return checked_path(label, value, error)
    if base == "tuple[int, int]":
        if (
            not isinstance(value, list | tuple)
            or len(value) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and 0 < v <= 16384 for v in value)
        ):
            raise bad("[width, height] with two positive integers")
        return (int(value[0]), int(value[1]))
    raise bad(base)  # pragma: no cover - every declared annotation is handled above


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(text)
    return value


def parse_text(flag: str, text: str, annotation: str, error: type[SchemaError] = SchemaError) -> Any:
    """A flag's text as the annotation's type; a `tuple[X, ...]` takes a comma list."""
    element = element_type(annotation)
    parts = [t.strip() for t in text.split(",") if t.strip()] if element else [text]
    if element and not parts:
        raise error(f"{flag} expects a comma list, got {text!r}")
    base = base_type(element or annotation)
    values = []
    for part in parts:
        if base == "Path":
            values.append(checked_path(flag, part, error))
            continue
        try:
            values.append({"int": int, "float": _finite}.get(base, str)(part))
        except ValueError:
            kind = {"int": "an integer", "float": "a finite number"}.get(base, base)
            raise error(f"{flag} expects {kind}, got {part!r}") from None
    return tuple(values) if element else values[0]


def check(
    label: str, value: Any, declared: Spec, error: type[SchemaError] = SchemaError, *, as_flag: bool = False
) -> None:
    """`value` (each item of a tuple) within the declared choices and limits, else `error`:
    "LABEL: V is not valid; expected ALLOWED", or with `as_flag` "LABEL must be ALLOWED, got V"."""
    for item in value if isinstance(value, tuple) else (value,):
        if declared.allows(item):
            continue
        if as_flag:
            integer = isinstance(item, int) and not isinstance(item, bool)
            raise error(f"{label} must be {declared.must_be(integer)}, got {shown(item)}")
        raise error(f"{label}: {shown(item)} is not valid; expected {declared.expected()}")


def build(
    cls: type, data: Any, label: Callable[[str], str], error: type[SchemaError], prefix: str = ""
) -> Any:
    """An instance of `cls` from a YAML mapping: unknown keys refused (naming the allowed ones),
    each value coerced, sections built from nested mappings. Limits are `check`ed later."""
    if not isinstance(data, dict):
        where = f"section '{prefix[:-1]}'" if prefix else "the config file"
        raise error(f"{where} must be a mapping of keys to values, got {shown(data)}")
    fields = _fields(cls)
    unknown = sorted(k if isinstance(k, str) else shown(k) for k in data if k not in fields)
    if unknown:
        raise error(
            f"unknown config key '{prefix}{shown(unknown[0]).strip(chr(39))}'; "
            f"allowed keys here: {', '.join(fields)}"
        )
    kwargs = {}
    for name, value in data.items():
        f = fields[name]
        if is_section(f):
            kwargs[name] = build(f.default_factory, value, label, error, f"{prefix}{name}.")
        else:
            kwargs[name] = coerce(label(prefix + name), value, str(f.type), error)
    return cls(**kwargs)


# --- Command-line flags -------------------------------------------------------------------


_finite.__name__ = "float"  # argparse names the type in "invalid float value: 'nan'"
_FLAG_TYPES: dict[str, Callable[[str], Any]] = {"int": int, "float": _finite, "Path": path_arg, "str": str}


def flag_help(f: dataclasses.Field, key: str | None = None) -> str:
    """A flag's help: its flag_help (or doc), and the setting it sets."""
    declared = spec(f)
    text = (declared.flag_help or declared.doc).replace("%", "%%").replace("\n", " ")
    return f"{text} [{key}]" if key else text


def flag_name(name: str) -> str:
    """The flag a setting gets unless it declares one: distill_epochs -> --distill-epochs."""
    return "--" + name.replace("_", "-")


def flags(cls: type, keys: Iterable[str] | None = None, show_key: bool = True) -> list[Flag]:
    """The flags of the settings of `cls` that declare one (only `keys`, in that order, when
    given; a key without a declared flag gets --LEAF-NAME)."""
    chosen = (
        [(key, field_at(cls, key)) for key in keys]
        if keys is not None
        else [(key, f) for key, _, f in walk(cls()) if spec(f).flag]
    )
    out = []
    for key, f in chosen:
        name = spec(f).flag or flag_name(key.rsplit(".", 1)[-1])
        out.append(Flag(key, name, name.removeprefix("--").replace("-", "_"), f, show_key))
    return out


@dataclass(frozen=True)
class Flag:
    """A command-line flag that sets one declared setting."""

    key: str  # the dotted setting it sets, e.g. "display.mode"
    name: str  # e.g. "--display"
    dest: str  # its argparse attribute, e.g. "display"
    field: dataclasses.Field
    show_key: bool = True  # help and errors name the key (a config key the flag overrides)


def add_flags(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    cls: type,
    keys: Iterable[str] | None = None,
    show_key: bool = True,
) -> list[Flag]:
    """One flag per declared setting of `cls` (see `flags`), default None (not given): bool
    settings as --X/--no-X, choices listed by argparse, other values typed as they are parsed
    (limits: `check_flags` once parsed, so the error names the flag in the settings' words)."""
    added = flags(cls, keys, show_key)
    for flag in added:
        declared = spec(flag.field)
        base = base_type(str(flag.field.type))
        help_text = flag_help(flag.field, flag.key if show_key else None)
        if base == "bool":
            parser.add_argument(
                flag.name, action=argparse.BooleanOptionalAction, default=None, help=help_text
            )
            continue
        parser.add_argument(
            flag.name,
            type=_FLAG_TYPES[base],
            choices=declared.choices,
            default=None,
            metavar=declared.metavar if declared.choices is None else None,
            help=help_text,
        )
    return added


def check_flags(parser: argparse.ArgumentParser, args: argparse.Namespace, added: Iterable[Flag]) -> None:
    """Each given flag's value within its setting's limits, else the parser's one-line error
    (exit 2): "--threads must be between 1 and 16, got 0 (config key model.threads)"."""
    for flag in added:
        value = getattr(args, flag.dest)
        if value is not None:
            try:
                check(flag.name, value, spec(flag.field), as_flag=True)
            except SchemaError as exc:
                parser.error(f"{exc} (config key {flag.key})" if flag.show_key else str(exc))


def given(args: argparse.Namespace, added: Iterable[Flag]) -> dict[str, Any]:
    """The flags given on the command line, by the dotted key each sets."""
    return {f.key: getattr(args, f.dest) for f in added if getattr(args, f.dest) is not None}


# --- The documented example file -------------------------------------------------------------


def _yaml_value(value: Any) -> str:
    import yaml  # only here: the daemon imports this module before its signal handlers are in

    if isinstance(value, Path):
        value = str(value)
    if isinstance(value, tuple):
        value = list(value)
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def example_yaml(obj: Any, header: Iterable[str]) -> str:
    """A YAML file documenting every setting of `obj` (a dataclass instance): the header
    comment lines, then each key with its value (the default, or its declared example) and
    '# doc (limits)'; sections as nested mappings under their docstring."""
    lines = [*header]

    def emit(section: Any, indent: str) -> None:
        for f in dataclasses.fields(section):
            if is_section(f):
                lines.append(f"{indent}{f.name}:  # {f.default_factory.__doc__.strip()}")
                emit(getattr(section, f.name), indent + "  ")
                if not indent:
                    lines.append("")
                continue
            declared = spec(f)
            value = getattr(section, f.name) if declared.example is NO_EXAMPLE else declared.example
            limits = declared.expected() if declared.has_limits else ""
            doc = declared.doc + (f" ({limits})" if limits else "")
            lines.append(f"{indent}{f.name}: {_yaml_value(value)}  # {doc}")

    emit(obj, "")
    return "\n".join(lines).rstrip() + "\n"
