"""Classification metrics from a confusion matrix (numpy only, no sklearn)."""

from __future__ import annotations

import numpy as np

from edge_fer.emotions.labels import EMOTIONS


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


def softmax_t(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Softmax of logits (N, C) divided by `temperature`, in float64."""
    z = np.asarray(logits, np.float64) / temperature
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def softmax_vs(logits: np.ndarray, scale: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Softmax of vector-scaled logits: class k's logit times scale[k] plus bias[k], in float64."""
    z = np.asarray(logits, np.float64) * np.asarray(scale, np.float64) + np.asarray(bias, np.float64)
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def fit_vector_scaling(
    logits: np.ndarray, labels: np.ndarray, ridge: float = 1e-3
) -> tuple[np.ndarray, np.ndarray]:
    """Vector scaling (Guo et al., 2017): the per-class scale and bias minimizing the NLL of
    softmax(logits * scale + bias). The NLL is convex in them (the new logits are linear in the
    parameters), so Newton's method with a backtracking line search finds the optimum in a few
    steps. `ridge` pulls the biases towards 0 (a common shift of all biases changes nothing,
    so without it they have no unique optimum) and the scales towards 1."""
    x = np.asarray(logits, np.float64)
    y = np.asarray(labels)
    n, k = x.shape
    onehot = np.eye(k)[y]
    prior = np.r_[np.ones(k), np.zeros(k)]

    def loss(theta: np.ndarray) -> float:
        p = softmax_vs(x, theta[:k], theta[k:])
        return negative_log_likelihood(p, y) + ridge * float(np.sum((theta - prior) ** 2))

    theta = prior.copy()
    current = loss(theta)
    for _ in range(50):
        p = softmax_vs(x, theta[:k], theta[k:])
        r = (p - onehot) / n  # d NLL / d new logits
        grad = np.r_[(r * x).sum(0), r.sum(0)] + 2 * ridge * (theta - prior)
        # Hessian of the NLL in the new logits per face is diag(p) - p p^T; chain it through
        # d logit_k / d scale_k = x_k and d logit_k / d bias_k = 1.
        a = np.einsum("ni,ij->nij", p, np.eye(k)) - np.einsum("ni,nj->nij", p, p)
        h_ss = np.einsum("nij,ni,nj->ij", a, x, x) / n
        h_sb = np.einsum("nij,ni->ij", a, x) / n
        h_bb = a.sum(0) / n
        hessian = np.block([[h_ss, h_sb], [h_sb.T, h_bb]]) + 2 * ridge * np.eye(2 * k)
        step = np.linalg.lstsq(hessian, grad, rcond=None)[0]  # least norm: singular when ridge=0
        t = 1.0
        while t > 1e-6:
            trial = theta - t * step
            value = loss(trial)
            if value <= current - 1e-4 * t * float(grad @ step):
                break
            t /= 2
        else:
            break
        theta, improvement, current = trial, current - value, value
        if improvement < 1e-10:
            break
    return theta[:k], theta[k:]


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """ECE: the sample-weighted mean |accuracy - confidence| over equal-width confidence bins
    of the top label."""
    conf = probs.max(axis=1)
    right = probs.argmax(axis=1) == labels
    which = np.minimum((conf * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            total += inside.sum() * abs(right[inside].mean() - conf[inside].mean())
    return float(total / max(1, len(labels)))


def negative_log_likelihood(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean -log p(true class)."""
    return float(-np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-12, 1.0)).mean())


def fit_temperature(logits: np.ndarray, labels: np.ndarray, objective: str = "nll") -> float:
    """The temperature minimizing `objective` on these faces: "nll" (golden-section search on
    log T in [0.05, 20]: the NLL is convex in 1/T, so unimodal there) or "ece" (the expected
    calibration error, on a grid of 241 temperatures from 0.25 to 4: it is not smooth)."""
    if objective == "ece":
        grid = np.exp(np.linspace(np.log(0.25), np.log(4.0), 241))
        errors = [expected_calibration_error(softmax_t(logits, t), labels) for t in grid]
        return float(grid[int(np.argmin(errors))])
    if objective != "nll":
        raise ValueError(f"unknown calibration objective {objective!r}; use nll or ece")
    lo, hi = np.log(0.05), np.log(20.0)
    ratio = (np.sqrt(5) - 1) / 2

    def nll(log_t: float) -> float:
        return negative_log_likelihood(softmax_t(logits, float(np.exp(log_t))), labels)

    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = nll(a), nll(b)
    for _ in range(60):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - ratio * (hi - lo)
            fa = nll(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = nll(b)
    return float(np.exp((lo + hi) / 2))


def reliability_bins(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> list[dict]:
    """Per confidence bin: its range, count, mean confidence and accuracy (for the diagram)."""
    conf = probs.max(axis=1)
    right = probs.argmax(axis=1) == labels
    which = np.minimum((conf * bins).astype(int), bins - 1)
    rows = []
    for b in range(bins):
        inside = which == b
        n = int(inside.sum())
        rows.append({"lo": b / bins, "hi": (b + 1) / bins, "n": n,
                     "confidence": float(conf[inside].mean()) if n else None,
                     "accuracy": float(right[inside].mean()) if n else None})  # fmt: skip
    return rows


def plot_reliability(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: str, title: str) -> None:
    """Reliability diagram (accuracy against confidence per bin) of each named (probs, labels)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5), dpi=110)
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfectly calibrated")
    for name, (probs, labels) in curves.items():
        rows = [r for r in reliability_bins(probs, labels) if r["n"] >= 10]
        ece = expected_calibration_error(probs, labels)
        ax.plot([r["confidence"] for r in rows], [r["accuracy"] for r in rows], "o-",
                label=f"{name} (ECE {ece * 100:.1f}%)")  # fmt: skip
    ax.set_xlabel("confidence (top label's probability)")
    ax.set_ylabel("accuracy")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_coverage(
    points: list[tuple[float, float, float]], chosen: float, path: str, title: str, what: str = "faces"
) -> None:
    """Accuracy against coverage of a confidence threshold: `points` are (threshold, coverage,
    accuracy) in [0, 1]; the threshold `chosen` is starred."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4), dpi=110)
    ax.plot([c * 100 for _, c, _ in points], [a * 100 for _, _, a in points], "o-")
    for t, c, a in points:
        ax.annotate(f"{t:g}", (c * 100, a * 100), fontsize=7, textcoords="offset points", xytext=(4, -10))
    t, c, a = min(points, key=lambda p: abs(p[0] - chosen))
    ax.plot([c * 100], [a * 100], "r*", ms=14, label=f"default {t:g}")
    ax.set_xlabel(f"coverage: {what} given a label (%)")
    ax.set_ylabel("accuracy of those labels (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
