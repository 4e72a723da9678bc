#!/usr/bin/env python3
"""Train the edge-fer emotion student end to end, on CPU (bf16 where it pays) or a GPU.

    python tools/train_mobilenet.py                      # all stages into runs/main/, resumable
    python tools/train_mobilenet.py --quick              # tiny run (the tests use it)
    python tools/train_mobilenet.py --stages prune,quantize,export --ship models/

A teacher ensemble trains in parallel, one thread per member (faster than one 2-thread run
after another on 2 cores), and then teaches the student:

    for s in 1 2 3; do nohup python tools/train_mobilenet.py --name teacher$s --stages teacher \
        --seed $s --threads 1 > runs/teacher$s.log 2>&1 & done; wait
    python tools/train_mobilenet.py --name ens \
        --teachers runs/teacher1/teacher.pt,runs/teacher2/teacher.pt,runs/teacher3/teacher.pt

With --kd-views K the student learns from the teacher's logits cached on K augmented views
of each face (built once into runs/<name>/teacher_views/) instead of a live teacher forward on
every batch: each KD epoch costs ~0.6x as much on this CPU.

Stages (see edge_fer/training/stages.py): teacher -> distill -> prune -> quantize -> export.
Every epoch is checkpointed; run the same command again after a stop and it continues
from the last finished epoch. A stage named in --stages that is already done runs again.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import yaml

from edge_fer.paths import DEFAULT_DATA, PROJECT_ROOT
from edge_fer.preprocess import MARGIN_RANGE

STAGES = ("teacher", "distill", "prune", "quantize", "export")


def _widths(text: str) -> tuple[int, ...]:
    try:
        widths = tuple(int(w) for w in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated channel counts, got {text!r}") from None
    if not widths or min(widths) < 1:
        raise argparse.ArgumentTypeError(f"channel counts must be positive, got {text!r}")
    return widths


def _paths(text: str) -> tuple[Path, ...]:
    paths = tuple(Path(t.strip()) for t in text.split(",") if t.strip())
    if not paths:
        raise argparse.ArgumentTypeError("expected a comma list of teacher checkpoint files")
    return paths


def read_recipe(parser: argparse.ArgumentParser, path: Path) -> dict:
    """A recipe's settings as parser defaults, each value checked by its flag's own type."""
    try:
        if not path.is_file():
            raise OSError("not a regular file")
        if path.stat().st_size > 1 << 20:
            raise OSError("larger than 1 MiB")
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        parser.error(f"--recipe {path}: cannot read it ({str(exc).splitlines()[0]}); pass a YAML recipe file")
    if not isinstance(data, dict):
        parser.error(f"--recipe {path}: expected a mapping of setting: value, got {type(data).__name__}")
    actions = {a.dest: a for a in parser._actions if a.dest not in ("help", "recipe")}
    values = {}
    for key, value in data.items():
        action = actions.get(str(key))
        if action is None:
            parser.error(f"--recipe {path}: unknown setting {key!r}; use the flags' names (distill_epochs)")
        if isinstance(action, argparse._StoreTrueAction):
            if not isinstance(value, bool):
                parser.error(f"--recipe {path}: {key} must be true or false, got {value!r}")
            values[key] = value
            continue
        if value is None or isinstance(value, (dict, bool)):
            parser.error(f"--recipe {path}: {key}: {value!r} is not a valid value")
        text = ",".join(str(v) for v in value) if isinstance(value, list) else str(value)
        try:
            values[key] = action.type(text) if action.type else text
        except (argparse.ArgumentTypeError, ValueError) as exc:
            parser.error(f"--recipe {path}: {key}: {exc}")
        if action.choices and values[key] not in action.choices:
            parser.error(f"--recipe {path}: {key} must be one of {', '.join(map(str, action.choices))}")
    return values


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--data",
        type=Path,
        default=DEFAULT_DATA,
        help="FER2013 folder (train/, test/) or fer2013.csv (default: $EDGE_FER_DATA "
        "or ../shared/datasets/fer2013)",
    )
    p.add_argument("--runs", type=Path, default=PROJECT_ROOT / "runs", help="where run folders go")
    p.add_argument("--name", default=None, help="run folder name (default: main, or quick)")
    p.add_argument("--stages", default=None, help=f"comma list of {','.join(STAGES)} (or all)")
    p.add_argument("--device", default="cpu", help="cpu, or cuda when a GPU is there")
    p.add_argument("--quick", action="store_true", help="tiny data subset and nets, 1 epoch each")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    p.add_argument("--input-size", type=int, default=48)
    p.add_argument("--subset", type=float, default=1.0, help="fraction of train to use")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--teacher-widths", type=_widths, default=(32, 64, 128, 256), help="FaceVGG stage widths")
    p.add_argument("--teacher-epochs", type=int, default=24)
    p.add_argument("--teacher-lr", type=float, default=0.1)
    p.add_argument(
        "--teachers",
        type=_paths,
        default=(),
        help="comma list of teacher.pt files (e.g. differently seeded teacher runs): distil from\n"
        "their ensemble; the teacher stage then evaluates it instead of training one",
    )
    p.add_argument("--width", type=float, default=1.25, help="student width multiplier")
    p.add_argument("--last-channels", type=int, default=512)
    p.add_argument(
        "--init-student",
        type=Path,
        default=None,
        help="student.pt of an earlier run to continue distilling from (its architecture is kept)",
    )
    p.add_argument("--distill-epochs", type=int, default=36)
    p.add_argument("--student-lr", type=float, default=0.1)
    p.add_argument(
        "--alpha",
        type=float,
        default=0.5,
        help="KD weight a in (1-a)*CE + a*T^2*KL; 0 trains the student without KD",
    )
    p.add_argument("--temperature", type=float, default=4.0)
    p.add_argument(
        "--kd-views",
        type=int,
        default=0,
        help="cache the teacher's logits on this many augmented views per face and distil from\n"
        "them (~2x faster KD epochs here); 0: run the teacher live on every batch",
    )
    p.add_argument(
        "--kd-mixup",
        type=float,
        default=0.0,
        help="mixup Beta(a, a) parameter for distill and fine-tune; the live teacher labels the\n"
        "mixed faces (0: off; needs --kd-views 0)",
    )
    p.add_argument(
        "--average-last",
        type=int,
        default=0,
        help="average the student's weights over the last K distill epochs (SWA-style, batch-norm\n"
        "statistics recomputed on the training faces); kept if it beats every single epoch (0: off)",
    )
    p.add_argument(
        "--teacher-tta",
        action="store_true",
        help="the live teacher labels each batch with the mean of its logits on the faces and\n"
        "their mirror images (its flip-TTA prediction, ~2x the teacher's cost)",
    )
    p.add_argument(
        "--degrade",
        type=float,
        default=0.0,
        help="probability of each camera degradation (noise, blur, exposure, JPEG, far face, roll,\n"
        "box jitter, occlusion) per training face in distill and fine-tune (0: off)",
    )
    p.add_argument(
        "--teacher-sees",
        choices=("clean", "degraded"),
        default="clean",
        help="with --degrade: the teacher labels the clean face (robust distillation) or the\n"
        "degraded one the student sees (plain augmentation)",
    )
    p.add_argument(
        "--keep-ratio", type=float, default=0.85, help="hidden channels kept by prune (1: no pruning)"
    )
    p.add_argument(
        "--crop-margin",
        type=float,
        default=-0.05,
        help="box margin the daemon crops faces with, in the model's metadata (negative: inside the box)",
    )
    p.add_argument("--finetune-epochs", type=int, default=6)
    p.add_argument(
        "--finetune-average-last",
        type=int,
        default=0,
        help="like --average-last, over the last K fine-tune epochs after pruning (0: off)",
    )
    p.add_argument("--calibration", type=int, default=1024, help="faces for int8 calibration")
    p.add_argument(
        "--qat-epochs",
        type=int,
        default=2,
        help="quantization-aware epochs when PTQ costs > 0.5 point or agrees < 98%% with float (0: never)",
    )
    p.add_argument(
        "--float-blocks",
        type=int,
        default=2,
        help="first layers kept float in the int8 program (1: stem, 2: stem + first block, 0: none)",
    )
    p.add_argument("--qat-always", action="store_true", help="run QAT even when PTQ is good")
    p.add_argument("--qat-lr", type=float, default=0.002)
    p.add_argument(
        "--ship",
        type=Path,
        default=None,
        help="also copy the exported model and metadata into this folder (models/)",
    )
    p.add_argument(
        "--recipe",
        type=Path,
        default=None,
        help="YAML file of settings (recipes/*.yaml: keys are these flags' names with _ for -);\n"
        "flags given on the command line override it",
    )
    argv = list(sys.argv[1:] if argv is None else argv)
    early, _ = p.parse_known_args(argv)
    if early.recipe is not None:
        p.set_defaults(**read_recipe(p, early.recipe))
    args = p.parse_args(argv)
    if args.recipe is not None:
        args.recipe_sha256 = hashlib.sha256(args.recipe.read_bytes()).hexdigest()
    if args.quick:  # small everything, except what was asked for explicitly
        given = {a.split("=")[0] for a in argv}
        quick = {
            "subset": min(args.subset, 0.05),
            "teacher_epochs": 1,
            "distill_epochs": 1,
            "finetune_epochs": 1,
            "teacher_widths": (16, 16, 32, 32),
            "width": 0.35,
            "last_channels": 64,
            "calibration": 64,
            "batch_size": 64,
        }
        for name, value in quick.items():
            if "--" + name.replace("_", "-") not in given:
                setattr(args, name, value)
    args.name = args.name or ("quick" if args.quick else "main")
    if args.stages:
        wanted = [s.strip() for s in args.stages.split(",") if s.strip()]
        wanted = list(STAGES) if wanted == ["all"] else wanted
        bad = [s for s in wanted if s not in STAGES]
        if bad:
            p.error(f"unknown stage(s) {bad}; choose from {', '.join(STAGES)} or all")
        args.stages = wanted
    for name in ("keep_ratio", "subset"):
        v = getattr(args, name)
        if not 0 < v <= 1:
            p.error(f"--{name.replace('_', '-')} must be in (0, 1], got {v}")
    lo, hi = MARGIN_RANGE
    if not lo <= args.crop_margin <= hi:
        p.error(f"--crop-margin must be in [{lo:g}, {hi:g}], got {args.crop_margin}")
    if not 0 <= args.alpha <= 1:
        p.error(f"--alpha must be in [0, 1], got {args.alpha}")
    for name in ("teacher_epochs", "distill_epochs", "finetune_epochs", "batch_size", "calibration"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    for name in ("teacher_lr", "student_lr", "qat_lr"):
        if not getattr(args, name) > 0:
            p.error(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    if args.kd_views and args.alpha == 0:
        p.error("--kd-views caches teacher logits for KD; it needs --alpha > 0")
    if args.kd_mixup and args.kd_views:
        p.error("--kd-mixup needs the live teacher (cached views hold unmixed faces); pass --kd-views 0")
    if not 0 <= args.degrade <= 1:
        p.error(f"--degrade must be in [0, 1], got {args.degrade}")
    if args.degrade and args.kd_views:
        p.error("--degrade needs the live teacher (cached views hold undegraded faces); pass --kd-views 0")
    if not 0 <= args.kd_mixup <= 10:
        p.error(f"--kd-mixup must be in [0, 10], got {args.kd_mixup}")
    if args.teacher_tta and args.kd_views:
        p.error("--teacher-tta is for the live teacher (cached views hold flip-TTA logits already)")
    if not 0 <= args.finetune_average_last <= args.finetune_epochs:
        p.error(
            f"--finetune-average-last must be between 0 and --finetune-epochs ({args.finetune_epochs}), "
            f"got {args.finetune_average_last}"
        )
    if not 0 <= args.average_last <= args.distill_epochs:
        p.error(
            f"--average-last must be between 0 and --distill-epochs ({args.distill_epochs}), "
            f"got {args.average_last}"
        )
    for name in ("qat_epochs", "float_blocks", "kd_views"):
        if getattr(args, name) < 0:
            p.error(f"--{name.replace('_', '-')} must be 0 or more, got {getattr(args, name)}")
    for path in (*args.teachers, *([args.init_student] if args.init_student else [])):
        if not path.is_file():
            p.error(f"checkpoint {path} does not exist; pass a .pt file written by a finished run")
    if args.threads is not None and not 1 <= args.threads <= 256:
        p.error(f"--threads must be between 1 and 256, got {args.threads}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        import torch
    except ImportError:
        print("error: training needs torch, not installed here: pip install -e '.[train]'", file=sys.stderr)
        return 2

    from edge_fer.dataset import DatasetError
    from edge_fer.nets.checkpoint import CheckpointError
    from edge_fer.training.stages import TrainSettings, run_stages

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("error: --device cuda asked for, but torch sees no CUDA GPU; use --device cpu", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    fields = TrainSettings.__dataclass_fields__
    settings = TrainSettings(**{k: v for k, v in vars(args).items() if k in fields})
    try:
        run_stages(settings, args.stages)
    except (DatasetError, CheckpointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: run the same command again to resume from the last epoch", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
