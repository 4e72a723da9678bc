"""Classification metrics from a confusion matrix (numpy only, no sklearn)."""

from __future__ import annotations

import numpy as np

from edge_fer.labels import EMOTIONS


def confusion_matrix(labels: np.ndarray, preds: np.ndarray, n: int = len(EMOTIONS)) -> np.ndarray:
    """Rows are true classes, columns predicted."""
    return np.bincount(labels * n + preds, minlength=n * n).reshape(n, n)


def summarize(cm: np.ndarray, classes: tuple[str, ...] = EMOTIONS) -> dict:
    """Accuracy, macro-F1 and per-class precision/recall/F1/support from a confusion matrix."""
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    present = support > 0
    n = int(cm.sum())
    return {
        "n": n,
        "accuracy": float(tp.sum() / n) if n else 0.0,
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "per_class": {
            c: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, c in enumerate(classes)
        },
        "confusion_matrix": cm.astype(int).tolist(),
    }


def format_report(summary: dict, classes: tuple[str, ...] = EMOTIONS) -> str:
    """A human-readable table of a `summarize` result."""
    lines = [
        f"accuracy {summary['accuracy'] * 100:.2f}%   macro-F1 {summary['macro_f1']:.4f}   n={summary['n']}",
        "",
        f"{'class':<10}{'precision':>10}{'recall':>10}{'f1':>8}{'support':>9}",
    ]
    for c in classes:
        p = summary["per_class"][c]
        lines.append(f"{c:<10}{p['precision']:>10.3f}{p['recall']:>10.3f}{p['f1']:>8.3f}{p['support']:>9d}")
    lines += [
        "",
        "confusion matrix (rows true, columns predicted):",
        " " * 10 + "".join(f"{c[:7]:>8}" for c in classes),
    ]
    for c, row in zip(classes, summary["confusion_matrix"], strict=True):
        lines.append(f"{c:<10}" + "".join(f"{v:>8d}" for v in row))
    return "\n".join(lines)


def plot_confusion(cm: np.ndarray, path: str, title: str, classes: tuple[str, ...] = EMOTIONS) -> None:
    """Save a row-normalized confusion matrix as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(6.4, 5.6))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(
                j,
                i,
                f"{norm[i, j]:.2f}\n{cm[i, j]}",
                ha="center",
                va="center",
                fontsize=7,
                color="white" if norm[i, j] > 0.5 else "black",
            )
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
