"""Small ExecuTorch programs that are wrong in the ways a model can be wrong after export:
`python -m testkit.bad_models OUTDIR` writes each as OUTDIR/<name>.pte with metadata beside it
(the shipped model's, so only the program is at fault). Run in a child process by the tests
(torch and executorch are test-only dependencies; the daemon never imports them)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from torch import nn

from edge_fer.config import DEFAULT_MODEL
from edge_fer.training.quantize import export_pte

SIZE = 48


class Head(nn.Module):
    """A linear head over the pixels, with a twist per kind of fault."""

    def __init__(self, kind: str, outputs: int = 7) -> None:
        super().__init__()
        self.kind = kind
        self.fc = nn.Linear(SIZE * SIZE, outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.fc(x.flatten(1))
        if self.kind == "nan":
            return torch.sqrt(-(y.abs() + 1.0))
        if self.kind == "rank3":
            return y.unsqueeze(1)
        if self.kind == "constant":
            return self.fc(x.flatten(1) * 0.0)
        return y


# name: (module, dynamic batch up to 15 in the program, what the metadata says)
KINDS = {
    "five_outputs": (lambda: Head("plain", 5), True, True),
    "nine_outputs": (lambda: Head("plain", 9), True, True),
    "rank3_output": (lambda: Head("rank3"), True, True),
    "nan_output": (lambda: Head("nan"), True, True),
    "constant_output": (lambda: Head("constant"), True, True),
    "fixed_called_dynamic": (lambda: Head("plain"), False, True),
    "good_tiny": (lambda: Head("plain"), True, True),
}


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    meta = json.loads(DEFAULT_MODEL.with_suffix(".json").read_text())
    torch.manual_seed(0)
    for name, (make, dynamic, says_dynamic) in KINDS.items():
        path = out / f"{name}.pte"
        if path.is_file():
            continue
        example = torch.rand(15, 1, SIZE, SIZE)
        export_pte(make().eval(), example, path, max_batch=15 if dynamic else None)
        m = json.loads(json.dumps(meta))
        m["name"] = name
        m["input"] = {**m.get("input", {}), "dynamic_batch": says_dynamic}
        path.with_suffix(".json").write_text(json.dumps(m))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
