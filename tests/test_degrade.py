"""Camera degradations: deterministic given a seed, in range, each doing what it says."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from edge_fer.training.degrade import (  # noqa: E402
    BENCH_STRENGTHS,
    DEGRADATIONS,
    TRAIN_RANGES,
    degrade,
    degraded_suite_sample,
    jpeg,
    random_degrade,
)


@pytest.fixture(scope="module")
def faces(public_faces) -> torch.Tensor:
    return torch.from_numpy(public_faces.images[:64]).float().unsqueeze(1) / 255.0


@pytest.mark.parametrize("kind", list(DEGRADATIONS))
def test_each_degradation_is_seeded_in_range_and_changes_the_face(faces, kind):
    a = degrade(faces, kind, BENCH_STRENGTHS[kind], torch.Generator().manual_seed(3))
    b = degrade(faces, kind, BENCH_STRENGTHS[kind], torch.Generator().manual_seed(3))
    assert a.shape == faces.shape and torch.equal(a, b)
    assert float(a.min()) >= 0 and float(a.max()) <= 1
    assert float((a - faces).abs().mean()) > 0.005
    assert set(BENCH_STRENGTHS) == set(DEGRADATIONS) == set(TRAIN_RANGES)


def test_strength_orders_the_damage(faces):
    for kind, (lo, hi) in TRAIN_RANGES.items():
        gen = torch.Generator().manual_seed(0)
        mild = (degrade(faces, kind, lo, gen) - faces).abs().mean()
        gen = torch.Generator().manual_seed(0)
        harsh = (degrade(faces, kind, hi, gen) - faces).abs().mean()
        # far_face, jpeg and dark: a larger number is a milder degradation
        assert (mild > harsh) if kind in ("far_face", "jpeg", "dark") else (mild < harsh), kind


@pytest.mark.fast
def test_jpeg_matches_libjpeg(public_faces):
    face = public_faces.images[0]
    ok, buf = cv2.imencode(".jpg", face, [cv2.IMWRITE_JPEG_QUALITY, 20])
    ref = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE).astype(np.float64)
    ours = jpeg(torch.from_numpy(face).float()[None, None] / 255, torch.tensor([20.0]))[0, 0].numpy() * 255
    assert np.abs(ours - ref).mean() < 0.5 < np.abs(face - ref).mean()


@pytest.mark.fast
def test_random_degrade_off_draws_nothing_and_on_stacks(faces):
    state = torch.get_rng_state()
    assert random_degrade(faces, 0.0) is faces and torch.equal(torch.get_rng_state(), state)
    out = random_degrade(faces, 1.0, torch.Generator().manual_seed(0))
    assert out.shape == faces.shape and float((out - faces).abs().mean()) > 0.05


@pytest.mark.fast
def test_suite_sample_is_uint8_and_deterministic(public_faces):
    x = torch.from_numpy(public_faces.images[:30])
    a, b = degraded_suite_sample(x, 1), degraded_suite_sample(x, 1)
    assert a.dtype == torch.uint8 and torch.equal(a, b) and not torch.equal(a, x)


def test_multires_alone_is_the_far_face_degradation(faces):
    """multires 1 with degrade 0: every face loses detail as a far face does, nothing else
    (the same pixels as low_resolution at the drawn sizes), deterministic given a seed."""
    a = random_degrade(faces, 0.0, torch.Generator().manual_seed(5), multires=1.0)
    b = random_degrade(faces, 0.0, torch.Generator().manual_seed(5), multires=1.0)
    assert torch.equal(a, b) and not torch.equal(a, faces)
    # a far face keeps the face's mean brightness and only removes fine detail
    assert float((a.mean(dim=(1, 2, 3)) - faces.mean(dim=(1, 2, 3))).abs().max()) < 0.02
    detail = lambda x: (x[..., 1:] - x[..., :-1]).abs().mean()  # noqa: E731
    assert detail(a) < 0.8 * detail(faces)
    # multires 0.5 degrades about half of the faces, and only their detail
    gen = torch.Generator().manual_seed(1)
    half = random_degrade(faces.repeat(4, 1, 1, 1), 0.0, gen, multires=0.5)
    changed = (half != faces.repeat(4, 1, 1, 1)).flatten(1).any(1).float().mean()
    assert 0.3 < float(changed) < 0.7


def test_the_robustness_benchmark_reports_every_condition_on_real_faces(small_fer, tmp_path):
    """bench_robustness.py end to end on 84 PublicTest faces and the shipped model: every
    condition scored, the `uncertain` coverage in range, the same JSON twice for one seed."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_robustness.py"
    outputs = []
    for name in ("a.json", "b.json"):
        out = str(tmp_path / name)
        proc = subprocess.run(
            [sys.executable, str(script), "--data", str(small_fer), "--no-peer", "--json", out],
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-2000:]
        outputs.append(json.loads((tmp_path / name).read_text()))
    assert outputs[0] == outputs[1]
    (model,) = outputs[0]["models"].values()
    assert set(model["conditions"]) == {"clean", *BENCH_STRENGTHS}
    for row in model["conditions"].values():
        assert 0 <= row["accuracy"] <= 1 and 0 <= row["ece"] <= 1 and 0 <= row["named"] <= 1
    assert model["conditions"]["clean"]["accuracy"] > 0.4  # the shipped model, not chance
    assert "far_face" in proc.stdout and "named at uncertain_below" in proc.stdout
