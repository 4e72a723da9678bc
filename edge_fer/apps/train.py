"""Train the edge-fer emotion student end to end, on CPU (bf16 where it pays) or a GPU.

    .venv/bin/edge-fer-train --recipe recipes/shipped.yaml   # the shipped model
    .venv/bin/edge-fer-train --quick        # tiny run (recipes/quick.yaml, the tests)
    .venv/bin/edge-fer-train --recipe recipes/robust.yaml --stages quantize,export

(`python tools/train_mobilenet.py` runs the same program.)

Settings (edge_fer/training/settings.py, one declaration) stack up: their defaults, then the
--recipe file (recipes/*.yaml: keys are these flags' names with _ for -, relative paths from
the checkout), then --quick's recipes/quick.yaml, then the flags given here. A chain recipe
(recipes/shipped.yaml) runs several recipes in order, each in its own run folder.

Stages (see edge_fer/training/stages.py): teacher -> distill -> prune -> quantize -> export.
Every epoch is checkpointed; run the same command again after a stop and it continues from
the last finished epoch, skipping finished stages. A stage named in --stages runs again.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import warnings
from functools import partial
from pathlib import Path

from edge_fer.core.user_input import FlagParser, path_arg
from edge_fer.training.settings import (
    QUICK_RECIPE,
    RETIRED,
    STAGES,
    SettingError,
    TrainSettings,
    build_settings,
    fields,
    flag,
    parse_flag,
    portable,
    read_recipe,
    validate,
)


def _argument(name: str, text: str) -> object:
    """argparse `type` for setting `name`: its typed, range-checked value."""
    try:
        return parse_flag(name, text)
    except SettingError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _retired(name: str, text: str) -> str:
    off, why = RETIRED[name]
    if text != str(off):
        raise argparse.ArgumentTypeError(f"{flag(name)} was removed ({why}); drop the flag")
    return text


def _default_text(field: dataclasses.Field) -> str:
    value = field.default
    if field.name == "data":
        return " (default: $EDGE_FER_DATA or ../shared/datasets/fer2013)"
    if value is None or value == ():
        return ""
    if isinstance(value, Path):
        value = portable(value)
    elif isinstance(value, tuple):
        value = ",".join(map(str, value))
    elif isinstance(value, bool):
        return ""
    return f" (default: {value})"


def build_parser() -> argparse.ArgumentParser:
    """The CLI: --recipe, --quick, --stages, and one flag per TrainSettings field."""
    p = FlagParser(prog="edge-fer-train", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--recipe",
        type=path_arg,
        default=None,
        help="YAML file of settings (recipes/*.yaml), or a chain of recipes; flags override it",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help=f"a tiny run: {portable(QUICK_RECIPE)} over the recipe (the tests)",
    )
    p.add_argument(
        "--stages",
        default=None,
        help=f"comma list of {','.join(STAGES)} (or all) to run (again); default: what is not done yet",
    )
    for name, field in fields().items():
        doc = field.metadata["doc"].replace("%", "%%") + _default_text(field)
        if str(field.type) == "bool":
            p.add_argument(flag(name), action=argparse.BooleanOptionalAction, default=None, help=doc)
        else:
            p.add_argument(
                flag(name), type=partial(_argument, name), default=None, metavar=name.upper(), help=doc
            )
    for name in RETIRED:
        p.add_argument(flag(name), type=partial(_retired, name), default=None, help=argparse.SUPPRESS)
    return p


def _stages(text: str | None) -> list[str] | None:
    if text is None:
        return None
    wanted = [s.strip() for s in text.split(",") if s.strip()]
    wanted = list(STAGES) if wanted == ["all"] else wanted
    bad = [s for s in wanted if s not in STAGES]
    if bad or not wanted:
        raise SettingError(f"unknown stage(s) {bad}; choose from {', '.join(STAGES)} or all")
    return wanted


def plan(args: argparse.Namespace) -> list[TrainSettings]:
    """The runs this command makes, in order (several for a chain recipe), each validated."""
    given = {name: getattr(args, name) for name in fields() if getattr(args, name) is not None}
    quick = read_recipe(QUICK_RECIPE) if args.quick else None
    steps, ship = [None], {}
    if args.recipe is not None:
        recipe = read_recipe(args.recipe.absolute())
        steps = [recipe]
        if recipe.chain:
            if "name" in given or args.stages or args.quick:
                raise SettingError(
                    f"recipe {args.recipe} chains {len(recipe.chain)} runs; --name, --stages and --quick "
                    "apply to one run: pass one of its recipes instead"
                )
            steps = [read_recipe(step) for step in recipe.chain]
            if any(step.chain for step in steps):
                raise SettingError(f"recipe {args.recipe}: a chain cannot hold another chain")
            ship = recipe.values
    runs = []
    for i, step in enumerate(steps):
        source = step or quick
        recorded = {"recipe": source.path, "recipe_sha256": source.sha256} if source else {}
        layers = [step.values if step else {}, quick.values if quick else {}]
        if i == len(steps) - 1:
            layers.append(ship)
        settings = build_settings(*layers, given, recorded)
        try:
            runs.append(validate(settings, check_files=len(steps) == 1))
        except SettingError as exc:
            raise SettingError(f"recipe {portable(source.path)}: {exc}" if source else str(exc)) from None
    return runs


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Flags -> Namespace with `runs` (the TrainSettings to run, in order) and `stages`;
    any bad flag, recipe or combination is a one-line error and exit 2."""
    p = build_parser()
    args = p.parse_args(argv)
    try:
        args.stages = _stages(args.stages)
        args.runs = plan(args)
    except SettingError as exc:
        p.error(str(exc))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # torchao's note on CUDA kernels it cannot load on a CPU machine, and a torch.compile
    # deprecation inside it: nothing a user can act on.
    for name in ("torchao", "torch.utils._pytree"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=r".*LeafSpec.*", category=FutureWarning)  # torch.export's own
    try:
        import torch
    except ImportError:
        print("error: training needs torch, not installed here: pip install -e '.[train]'", file=sys.stderr)
        return 2

    from edge_fer.data.fer2013 import DatasetError
    from edge_fer.nets.checkpoint import CheckpointError
    from edge_fer.training.stages import TrainingError, run_stages

    for settings in args.runs:
        if settings.device.startswith("cuda") and not torch.cuda.is_available():
            print(
                "error: --device cuda asked for, but torch sees no CUDA GPU; use --device cpu",
                file=sys.stderr,
            )
            return 2
        if settings.threads:
            torch.set_num_threads(settings.threads)
        try:
            run_stages(settings, args.stages)
        except (DatasetError, CheckpointError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except TrainingError as exc:  # the run's own state stands in the way (exit 1)
            print(f"error: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("interrupted: run the same command again to resume from the last epoch", file=sys.stderr)
            return 130
        where_next(settings, smoke_test=args.quick)
    return 0


def where_next(settings: TrainSettings, smoke_test: bool) -> None:
    """After a run that exported a model: where its report is and how to try it."""
    run_dir = settings.runs / settings.name
    pte = run_dir / "edge_fer_student.pte"
    if not (run_dir / "export.done.json").is_file() or not pte.is_file():
        return
    if smoke_test:
        print("smoke test passed: every stage ran on a tiny slice with tiny nets. Its model scores "
              "near chance (often one label for every face); train a recipe for a real one.")  # fmt: skip
    print(f"report: {run_dir / 'report.md'}")
    print(f"try it: .venv/bin/edge-fer --model {pte}   (or .venv/bin/edge-fer-classify --model {pte} PHOTO)")


if __name__ == "__main__":
    sys.exit(main())
