import numpy as np
import pytest
import torch

from edge_fer.evaluation.metrics import confusion_matrix, summarize
from edge_fer.nets import FaceVGG, MobileNetV2, student_arch
from edge_fer.nets.mobilenetv2 import StudentArch, count_macs
from edge_fer.training.prune import prune_student


@pytest.mark.fast
def test_summary_from_a_known_confusion_matrix():
    labels = np.array([0, 0, 1, 1, 1, 3])
    preds = np.array([0, 1, 1, 1, 0, 3])
    s = summarize(confusion_matrix(labels, preds))
    assert s["n"] == 6 and s["accuracy"] == pytest.approx(4 / 6)
    assert s["per_class"]["angry"]["precision"] == pytest.approx(0.5)
    assert s["per_class"]["disgust"]["recall"] == pytest.approx(2 / 3)
    # macro-F1 averages only the classes present: angry 0.5, disgust 2/3, happy 1.
    assert s["macro_f1"] == pytest.approx((0.5 + 2 / 3 + 1) / 3)


def test_student_and_teacher_shapes_and_export():
    student = MobileNetV2(student_arch(0.5, stem_stride=2, last_channels=128)).eval()
    x = torch.randn(3, 1, 48, 48)
    assert student(x).shape == (3, 7)
    assert FaceVGG(widths=(8, 8, 16, 16)).eval()(x).shape == (3, 7)
    exported = torch.export.export(student, (x[:1],))
    assert torch.allclose(exported.module()(x[:1]), student(x[:1]), atol=1e-5)
    arch = StudentArch.from_dict(student.arch.to_dict())
    assert arch == student.arch


def test_pruning_removes_channels_and_keeps_the_kept_function():
    torch.manual_seed(0)
    model = MobileNetV2(student_arch(0.5, stem_stride=2, last_channels=128)).eval()
    for m in model.modules():  # make BN scales distinct so the ranking is meaningful
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data.uniform_(0.1, 1.0)
            m.running_mean.uniform_(-0.1, 0.1)
    same = prune_student(model, 1.0)
    x = torch.randn(2, 1, 48, 48)
    assert torch.allclose(same(x), model(x), atol=1e-5)
    pruned = prune_student(model, 0.5)
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert n(pruned) < 0.7 * n(model)
    assert count_macs(pruned, 48) < 0.7 * count_macs(model, 48)
    hidden = [b.hidden for b in pruned.arch.blocks if b.expand]
    assert all(h % 8 == 0 for h in hidden)
    assert pruned(x).shape == (2, 7)
    with pytest.raises(ValueError, match="keep_ratio"):
        prune_student(model, 0.0)


@pytest.mark.fast
def test_teacher_ensemble_averages_member_logits_and_checks_preprocessing(tmp_path):
    from edge_fer.emotions.preprocess import PreprocessSpec
    from edge_fer.nets import FaceVGG
    from edge_fer.nets.checkpoint import CheckpointError, save_model
    from edge_fer.nets.ensemble import load_ensemble

    spec = PreprocessSpec(input_size=48)
    paths = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        paths.append(tmp_path / f"t{seed}.pt")
        save_model(paths[-1], FaceVGG(widths=(8, 8, 16, 16), input_size=48), spec, {})
    ensemble, ckpts = load_ensemble(paths, spec)
    x = torch.randn(3, 1, 48, 48)
    with torch.no_grad():
        expected = (ensemble.members[0](x) + ensemble.members[1](x)) / 2
        assert torch.allclose(ensemble(x), expected, atol=1e-6)
    assert [c["kind"] for c in ckpts] == ["facevgg", "facevgg"]
    with pytest.raises(CheckpointError, match="same --input-size"):
        load_ensemble(paths, PreprocessSpec(input_size=64))


def test_float_blocks_stay_float_and_the_rest_is_int8():
    """--float-blocks: the named first layers keep float weights in the quantized graph;
    every other conv and linear gets int8 per-channel weights."""
    from edge_fer.training.quantize import float_prefix, quantize_int8

    torch.manual_seed(0)
    model = MobileNetV2(student_arch(0.35, stem_stride=2, last_channels=64)).eval()
    calibration = torch.randn(16, 1, 48, 48)
    layers = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d | torch.nn.Linear)]
    in_first_two = [m for m in model.features[:2].modules() if isinstance(m, torch.nn.Conv2d)]

    def int8_weights(graph: torch.nn.Module) -> int:
        target = torch.ops.quantized_decomposed.dequantize_per_channel.default
        return sum(1 for n in graph.graph.nodes if n.target == target)

    assert float_prefix(model, 0) == () and float_prefix(model, 2) == ("features.0", "features.1")
    assert int8_weights(quantize_int8(model, calibration)) == len(layers)
    mixed = quantize_int8(model, calibration, float_modules=float_prefix(model, 2))
    assert int8_weights(mixed) == len(layers) - len(in_first_two) > 0
    assert torch.allclose(mixed(calibration[:2]), model(calibration[:2]), atol=0.5)
    with pytest.raises(ValueError, match=f"the model has {len(model.features)}"):
        float_prefix(model, len(model.features) + 1)


@pytest.mark.fast
def test_vector_scaling_recovers_the_map_that_made_the_labels():
    """Labels drawn from softmax(logits * scale + bias): the fit finds that scale and bias
    (up to a common shift of the biases) and beats a single temperature on NLL."""
    from edge_fer.evaluation.metrics import (
        fit_temperature,
        fit_vector_scaling,
        negative_log_likelihood,
        softmax_t,
        softmax_vs,
    )

    rng = np.random.default_rng(0)
    logits = rng.normal(0, 2, (20000, 7))
    scale = np.array([0.5, 1.5, 1.0, 2.0, 0.8, 1.2, 1.0])
    bias = np.array([0.0, -1.0, 0.5, 0.0, 0.3, -0.2, 0.1])
    p = softmax_vs(logits, scale, bias)
    labels = (p.cumsum(1) > rng.random((len(p), 1))).argmax(1)
    fitted_scale, fitted_bias = fit_vector_scaling(logits, labels, ridge=0.0)
    np.testing.assert_allclose(fitted_scale, scale, atol=0.08)
    np.testing.assert_allclose(fitted_bias - fitted_bias.mean(), bias - bias.mean(), atol=0.08)
    t = fit_temperature(logits, labels)
    vs_nll = negative_log_likelihood(softmax_vs(logits, fitted_scale, fitted_bias), labels)
    assert vs_nll < negative_log_likelihood(softmax_t(logits, t), labels) - 0.01
