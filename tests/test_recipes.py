"""Recipes (recipes/*.yaml) and the one settings declaration they and the CLI come from:
every recipe loads and validates, bad ones are one-line errors, and a model's metadata names
the recipe (and its SHA-256) it was exported from."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from edge_fer.training.settings import (
    MAX_RECIPE_BYTES,
    SettingError,
    TrainSettings,
    fields,
    read_recipe,
    validate,
)

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted((ROOT / "recipes").glob("*.yaml"))
SHIPPED_METADATA = ROOT / "edge_fer" / "models" / "edge_fer_student.json"


def _cli():
    from edge_fer.apps import train

    return train


def _refused(argv: list[str], capsys) -> str:
    """The CLI's one error line for `argv` (exit 2, no traceback)."""
    with pytest.raises(SystemExit) as stop:
        _cli().parse_args(argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err.strip().splitlines()[-1]


@pytest.mark.fast
def test_the_recipes_are_there():
    names = {p.name for p in RECIPES}
    assert {"quick.yaml", "shipped.yaml", "teacher_t4.yaml", "teacher_t5.yaml", "v10t_distill.yaml",
            "v10t.yaml", "robust.yaml", "robust_wise.yaml", "robust_soup.yaml"} <= names  # fmt: skip


@pytest.mark.fast
@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_every_recipe_loads_and_validates(path, monkeypatch, tmp_path):
    """From any working directory: a recipe's relative paths are the checkout's."""
    monkeypatch.chdir(tmp_path)
    args = _cli().parse_args(["--recipe", str(path)])
    assert args.runs
    for settings in args.runs:
        assert settings.recipe_sha256 == hashlib.sha256(settings.recipe.read_bytes()).hexdigest()
        for ckpt in (*settings.teachers, *([settings.init_student] if settings.init_student else [])):
            assert ckpt.is_relative_to(ROOT) and ckpt.is_file()
        assert not str(settings.runs).startswith(str(tmp_path))
    recipe = read_recipe(path)
    for step in recipe.chain:  # a chain names recipes that exist, in order
        assert step.is_file()
    assert recipe.values or recipe.chain


@pytest.mark.fast
def test_the_shipped_chain_ends_with_the_robust_fine_tune_and_ships_it():
    runs = _cli().parse_args(["--recipe", str(ROOT / "recipes" / "shipped.yaml")]).runs
    assert [r.name for r in runs] == ["t4", "t5", "v10t", "v10t", "robust_wise"]
    assert runs[-1].wise_alpha == 0.6 and runs[-1].keep_ratio == 1.0 and runs[-1].degrade > 0
    assert [r.last_stage for r in runs] == ["teacher", "teacher", "distill", "export", "export"]
    assert runs[-1].ship == ROOT / "edge_fer" / "models" and all(r.ship is None for r in runs[:-1])
    assert runs[-1].init_student == ROOT / "artifacts" / "v10t" / "pruned.pt"
    # The robust fine-tune is taught by the two tracked teachers the chain's first steps train.
    assert runs[-1].teachers == tuple(r.runs / r.name / "teacher.pt" for r in runs[:2])
    # v10t's distillation ran without teacher TTA and its fine-tune with it (two recipes, one folder).
    assert (runs[2].teacher_tta, runs[3].teacher_tta) == (False, True)
    assert runs[2].runs / runs[2].name == runs[3].runs / runs[3].name == ROOT / "artifacts" / "v10t"


@pytest.mark.fast
def test_the_tracked_teachers_match_their_hashes():
    for name in ("t4", "t5"):
        home = ROOT / "teachers" / name
        digest, file = (home / "teacher.pt.sha256").read_text().split()
        assert hashlib.sha256((home / file).read_bytes()).hexdigest() == digest
        assert json.loads((home / "teacher.done.json").read_text())["settings"]["seed"] == int(name[1])
    for line in (ROOT / "artifacts" / "v10t" / "SHA256SUMS").read_text().splitlines():
        digest, file = line.split()
        assert hashlib.sha256((ROOT / "artifacts" / "v10t" / file).read_bytes()).hexdigest() == digest


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


@pytest.mark.fast
def test_no_absolute_path_in_committed_training_config():
    files = [*RECIPES, *(ROOT / "teachers").rglob("*.json*"), *(ROOT / "artifacts").rglob("*.json*")]
    assert len(files) > 10
    for path in files:
        text = path.read_text()
        lines = text.splitlines() if path.suffix == ".jsonl" else [text]
        docs = (
            [yaml.safe_load(text)] if path.suffix == ".yaml" else [json.loads(x) for x in lines if x.strip()]
        )
        for value in (s for doc in docs for s in _strings(doc)):
            assert not os.path.isabs(value), f"{path.relative_to(ROOT)}: {value}"


@pytest.mark.fast
def test_every_setting_has_a_doc_a_flag_and_valid_defaults():
    parser = _cli().build_parser()
    flags = {a for action in parser._actions for a in action.option_strings}
    for name, field in fields().items():
        assert field.metadata["doc"], name
        assert "--" + name.replace("_", "-") in flags, name
    validate(TrainSettings(), check_files=False)
    # The flags the project has always had still parse.
    for old in ("--data", "--runs", "--name", "--stages", "--device", "--quick", "--seed", "--threads",
                "--teachers", "--init-student", "--width", "--last-channels", "--distill-epochs",
                "--teacher-tta", "--kd-mixup", "--average-last", "--degrade", "--teacher-sees",
                "--keep-ratio", "--finetune-average-last", "--float-blocks", "--crop-margin",
                "--ship", "--recipe"):  # fmt: skip
        assert old in flags, old


@pytest.mark.fast
def test_layers_defaults_recipe_quick_flags(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: mine\ndistill_epochs: 7\nteacher_widths: [8, 8, 16, 16]\n")
    cli = _cli()
    (s,) = cli.parse_args(["--recipe", str(recipe)]).runs
    assert (s.name, s.distill_epochs, s.teacher_widths, s.alpha) == ("mine", 7, (8, 8, 16, 16), 0.5)
    (s,) = cli.parse_args(["--recipe", str(recipe), "--distill-epochs", "3"]).runs
    assert s.distill_epochs == 3 and s.recipe == recipe
    (s,) = cli.parse_args(["--recipe", str(recipe), "--quick"]).runs  # quick over the recipe
    assert (s.name, s.distill_epochs, s.width, s.subset) == ("quick", 1, 0.35, 0.05)
    (s,) = cli.parse_args(["--quick", "--subset", "0.01", "--no-teacher-tta"]).runs
    assert (s.subset, s.teacher_tta, s.recipe.name) == (0.01, False, "quick.yaml")
    (s,) = cli.parse_args([]).runs
    assert s == TrainSettings() and s.recipe is None


BAD_RECIPES = [
    ("distil_epochs: 80\n", "unknown setting 'distil_epochs'"),
    ("distill_epochs: eighty\n", "setting 'distill_epochs': 'eighty' is not valid; expected an integer"),
    ("teacher_tta: 1\n", "setting 'teacher_tta': 1 is not valid; expected true or false"),
    ("teachers: teachers/t4/teacher.pt\n", "teachers must be a list"),
    ("soup: [null]\n", "setting 'soup[0]': None is not valid; expected a file path"),
    ("soup: [a.pt, a.pt]\nkeep_ratio: 1\n", "--soup names one student twice"),
    ("wise_alpha: 0.5\nkeep_ratio: 1\n", "set --init-student"),
    ("alpha: 1.5\n", "alpha must be in [0, 1], got 1.5"),
    ("teacher_widths: [32, 0]\n", "teacher_widths must be between 1 and 4096, got 0"),
    ("teacher_sees: both\n", "teacher_sees must be one of clean, degraded"),
    ("- alpha: 0.5\n", "must be a mapping of setting: value"),
    ("just text\n", "must be a mapping of setting: value"),
    ("alpha: [\n", "is not valid YAML"),
    ("alpha: 0.5\nalpha: 0.6\n", "has the key 'alpha' twice"),
    ("average_last: 9\ndistill_epochs: 8\n", "--average-last must be between 0 and --distill-epochs (8)"),
    ("init_student: nowhere/student.pt\n", "checkpoint nowhere/student.pt does not exist"),
    ("chain: [recipes/robust.yaml]\nalpha: 0.5\n", "a chain recipe holds only chain: and ship:"),
    ("chain: recipes/robust.yaml\n", "chain must be a list of recipe files"),
]


@pytest.mark.fast
@pytest.mark.parametrize(("text", "message"), BAD_RECIPES, ids=[m for _, m in BAD_RECIPES])
def test_a_bad_recipe_is_a_one_line_error(text, message, tmp_path, capsys):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text(text)
    line = _refused(["--recipe", str(recipe)], capsys)
    assert message in line and str(recipe) in line


@pytest.mark.fast
def test_special_and_huge_recipe_files_are_refused(tmp_path, capsys):
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    assert "is a FIFO, not a regular file" in _refused(["--recipe", str(fifo)], capsys)
    assert "is a directory, not a regular file" in _refused(["--recipe", str(tmp_path)], capsys)
    huge = tmp_path / "huge.yaml"
    huge.write_bytes(b"# " + b"x" * MAX_RECIPE_BYTES + b"\n")
    assert f"the limit is {MAX_RECIPE_BYTES}" in _refused(["--recipe", str(huge)], capsys)
    assert "cannot be read (No such file or directory)" in _refused(
        ["--recipe", str(tmp_path / "no.yaml")], capsys
    )
    (tmp_path / "latin1.yaml").write_bytes(b"name: caf\xe9\n")
    assert "is not UTF-8 text" in _refused(["--recipe", str(tmp_path / "latin1.yaml")], capsys)
    with pytest.raises(SettingError, match="a chain cannot hold another chain"):
        chain = tmp_path / "chain.yaml"
        chain.write_text(f"chain: [{ROOT / 'recipes' / 'shipped.yaml'}]\n")
        _cli().plan(_cli().build_parser().parse_args(["--recipe", str(chain)]))


@pytest.mark.fast
def test_a_chain_runs_whole(capsys):
    line = _refused(["--recipe", str(ROOT / "recipes" / "shipped.yaml"), "--name", "x"], capsys)
    assert "--name, --stages and --quick apply to one run" in line


@pytest.mark.fast
def test_bad_flags_name_the_flag_and_the_limit(capsys):
    assert "--subset must be in (0, 1], got 0.0" in _refused(["--subset", "0"], capsys)
    assert "--distill-epochs expects an integer, got '1.5'" in _refused(["--distill-epochs", "1.5"], capsys)
    assert "--teacher-lr must be positive" in _refused(["--teacher-lr", "-1"], capsys)
    assert "--last-stage must be one of teacher" in _refused(["--last-stage", "ship"], capsys)
    assert "--name '../x'" in _refused(["--name", "../x"], capsys)


@pytest.mark.fast
def test_the_real_command_refuses_a_bad_recipe_in_one_line(tmp_path):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("keep_ratio: 2\n")
    command = [sys.executable, str(ROOT / "tools" / "train_mobilenet.py"), "--recipe", str(recipe)]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    (line,) = proc.stderr.strip().splitlines()  # one line, naming the recipe and the setting
    assert str(recipe) in line and "keep_ratio must be in (0, 1], got 2.0" in line, line


@pytest.mark.slow
def test_export_writes_the_recipe_and_its_hash_into_the_metadata(quick_run):
    """--quick is the quick recipe: every stage for real on 1% of FER2013 (the shared run)."""
    recipe = ROOT / "recipes" / "quick.yaml"
    meta = json.loads((quick_run / "edge_fer_student.json").read_text())
    assert meta["recipe"] == {
        "path": "recipes/quick.yaml",
        "sha256": hashlib.sha256(recipe.read_bytes()).hexdigest(),
    }
    assert meta["training"]["distill"]["recipe"] == "recipes/quick.yaml"
    assert meta["training"]["distill"]["subset"] == 0.01  # the flag over the recipe, recorded


@pytest.mark.fast
def test_the_shipped_model_names_the_recipe_it_came_from():
    """The shipped metadata names a recipe file of this checkout whose SHA-256 matches."""
    meta = json.loads(SHIPPED_METADATA.read_text())
    recipe = meta.get("recipe")
    assert recipe, f"{SHIPPED_METADATA.name} names no recipe: re-export it with --recipe"
    path = ROOT / recipe["path"]
    assert path.is_file() and path.is_relative_to(ROOT / "recipes")
    assert hashlib.sha256(path.read_bytes()).hexdigest() == recipe["sha256"]


def test_a_state_saved_before_the_cleanup_still_resumes(tmp_path, capsys):
    """States written before kd_views and the AdamW option went (their config holds
    kd_views 0 and optimizer sgd) resume; one that used cached views is refused in one line."""
    import numpy as np
    import torch
    from torch import nn

    from edge_fer.data.fer2013 import FaceSet
    from edge_fer.emotions.preprocess import PreprocessSpec
    from edge_fer.training.loop import FitConfig, TrainingError, fit

    rng = np.random.default_rng(0)
    faces = FaceSet(rng.integers(0, 256, (64, 48, 48), dtype=np.uint8), rng.integers(0, 7, 64), ["f"] * 64)
    cfg = FitConfig(epochs=1, lr=0.01, batch_size=32, degrade=0.2)

    def run() -> dict:
        torch.manual_seed(0)
        net = nn.Sequential(nn.Conv2d(1, 16, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 7))
        return fit(net, faces, faces, PreprocessSpec(), cfg, torch.device("cpu"), tmp_path, "distill",
                   lambda m, r: None)  # fmt: skip

    run()
    state_path = tmp_path / "distill_state.pt"
    state = torch.load(state_path, weights_only=False)
    state["config"] = {**state["config"], "kd_views": 0, "optimizer": "sgd"}
    torch.save(state, state_path)
    capsys.readouterr()
    run()
    assert "resuming after epoch 1/1" in capsys.readouterr().out
    state["config"]["kd_views"] = 12
    torch.save(state, state_path)
    with pytest.raises(TrainingError, match="saved with kd_views=12"):
        run()


@pytest.mark.fast
@pytest.mark.parametrize("name", ["robust", "robust_plain"])
def test_the_running_robust_recipes_resume_their_saved_state(name):
    """A rerun of recipes/<name>.yaml builds the FitConfig its runs/<name>/ state was saved
    with (where this machine has that scratch run)."""
    import torch

    from edge_fer.training.loop import same_config
    from edge_fer.training.stages import distill_config

    state_path = ROOT / "runs" / name / "distill_state.pt"
    if not state_path.is_file():
        pytest.skip(f"runs/{name}/ is scratch, not in this checkout")
    saved = torch.load(state_path, map_location="cpu", weights_only=False)["config"]
    (settings,) = _cli().parse_args(["--recipe", str(ROOT / "recipes" / f"{name}.yaml")]).runs
    cfg = distill_config(settings, "distill", settings.distill_epochs, settings.student_lr)
    assert same_config(saved, cfg)
    assert not same_config(saved, distill_config(settings, "distill", settings.distill_epochs, 0.1))


@pytest.mark.fast
def test_records_write_checkout_paths_relative_to_it():
    """Older runs' done markers held absolute paths; the export's metadata rewrites them."""
    from edge_fer.core.paths import PROJECT_ROOT
    from edge_fer.training.settings import portable_record

    old = {
        "data": str(PROJECT_ROOT.parent / "shared" / "datasets" / "fer2013"),
        "runs": str(PROJECT_ROOT / "runs"),
        "teachers": [str(PROJECT_ROOT / "teachers" / "t4" / "teacher.pt"), "runs/t5/teacher.pt"],
        "init_student": None,
        "recipe": "/elsewhere/recipes/robust.yaml",
        "name": "/not/a/path/field",
    }
    assert portable_record(old) == {
        **old,
        "data": "../shared/datasets/fer2013",
        "runs": "runs",
        "teachers": ["teachers/t4/teacher.pt", "runs/t5/teacher.pt"],
    }
