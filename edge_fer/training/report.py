"""Training report: curves of every stage and a markdown summary in the run folder."""

from __future__ import annotations

import json
from pathlib import Path

from edge_fer.core import safe_io
from edge_fer.core.paths import PROJECT_ROOT
from edge_fer.evaluation.metrics import format_report

STAGE_ORDER = ("teacher", "distill", "prune")


def write_record(path: Path, text: str) -> None:
    """Replace a run record (done marker, config.json, quantize.json...) with `text` atomically:
    a stop mid-write leaves the old file or the new one, never half of it."""
    safe_io.write_atomic(path, text.encode(), 0o644)


def read_rows(path: Path) -> list[dict]:
    """The records of a `<stage>_metrics.jsonl` file ([] when it is missing)."""
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def read_metrics(run_dir: Path) -> dict[str, list[dict]]:
    """Per-epoch records of each stage; an ensemble teacher's members (trained in their own
    runs) appear as `teacher <run>`."""
    run_dir = Path(run_dir)
    out = {}
    for stage in STAGE_ORDER:
        if stage == "teacher" and (run_dir / "teacher.done.json").is_file():
            members = json.loads((run_dir / "teacher.done.json").read_text()).get("ensemble", [])
            for member in members:
                path = PROJECT_ROOT / member["path"]  # records name checkout paths relative to it
                rows = read_rows(path.with_name(f"{path.stem}_metrics.jsonl"))
                if rows:
                    out[f"teacher {path.parent.name}"] = rows
        rows = read_rows(run_dir / f"{stage}_metrics.jsonl")
        if rows:
            out[stage] = rows
    return out


def plot_curves(run_dir: Path, path: Path) -> None:
    """Loss and validation accuracy per epoch for each stage, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = read_metrics(run_dir)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for stage, rows in metrics.items():
        epochs = [r["epoch"] for r in rows]
        axes[0].plot(epochs, [r["train_loss"] for r in rows], marker=".", label=stage)
        axes[1].plot(epochs, [r["val_accuracy"] * 100 for r in rows], marker=".", label=stage)
    axes[0].set_title("training loss")
    axes[1].set_title("PublicTest accuracy (%)")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(run_dir: Path, metadata: dict, summary: dict) -> Path:
    """Write runs/<name>/report.md: what was trained, per-stage bests, int8 evaluation."""
    run_dir = Path(run_dir)
    lines = [
        "# edge-fer training report",
        "",
        "## Stages (best PublicTest accuracy)",
        "",
        "| stage | epochs | best epoch | accuracy | macro-F1 |",
        "|---|---:|---:|---:|---:|",
    ]
    for stage, rows in read_metrics(run_dir).items():
        best = max(rows, key=lambda r: r["val_accuracy"])
        lines.append(
            f"| {stage} | {len(rows)} | {best['epoch']} | "
            f"{best['val_accuracy'] * 100:.2f}% | {best['val_macro_f1']:.3f} |"
        )
    acc = metadata["accuracy"]
    lines += [
        "",
        "## Shipped int8 program",
        "",
        f"- size: {metadata['model_bytes']} bytes; parameters {metadata['params']}; "
        f"{metadata['macs'] / 1e6:.2f} MMACs per face",
        f"- int8 PublicTest accuracy {acc['publictest_int8'] * 100:.2f}% "
        f"(float {acc['float_accuracy'] * 100:.2f}%), agreement int8 vs float "
        f"{acc['int8_float_agreement'] * 100:.2f}%",
        "",
        "```",
        format_report(summary),
        "```",
        "",
        "![curves](training_curves.png)",
        "![confusion](confusion_int8.png)",
        "",
    ]
    path = run_dir / "report.md"
    write_record(path, "\n".join(lines))
    return path
