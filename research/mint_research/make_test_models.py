"""Models exported from PyTorch as an auditor would bring them, for the toolkit's tests
(cli/tests/cli.rs): a small ResNet (a stride-2 stem and a max-pool, then four stages of two
basic blocks, 8/16/32/64 channels at 16/8/4/2 pixels for a 3x64x64 input), seeded random
weights, in variants that differ only in how the graph's outputs are declared:

  logits_only.onnx     outputs [logits]                                  fixed batch 1
  stages_first.onnx    outputs [stage1..stage4 maps, logits]             dynamic batch
  embedding_first.onnx outputs [embedding (pooled [N, 64]), output]      dynamic batch
  probabilities.onnx   outputs [probabilities (softmax of the logits)]   dynamic batch

usage: .venv/bin/python -m mint_research.make_test_models OUT_DIR
Writes OUT_DIR/expected.json: per stage, the name of the ONNX node of its last 3x3
convolution, and the outcome's output name, as PyTorch named them.
"""

import json
import sys
from pathlib import Path

import torch
from torch import nn

from mint_research.train_audited import Block  # the shipped models' basic block

WIDTHS = [8, 16, 32, 64]
CLASSES = 7


class SmallResNet(nn.Module):
    def __init__(self, outputs):
        super().__init__()
        self.outputs = outputs
        self.stem = nn.Sequential(nn.Conv2d(3, WIDTHS[0], 3, 2, 1, bias=False), nn.BatchNorm2d(WIDTHS[0]), nn.ReLU())
        self.pool = nn.MaxPool2d(3, 2, 1)
        stages, cin = [], WIDTHS[0]
        for i, w in enumerate(WIDTHS):
            stride = 1 if i == 0 else 2
            stages.append(nn.Sequential(Block(cin, w, stride), Block(w, w, 1)))
            cin = w
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.fc = nn.Linear(WIDTHS[-1], CLASSES)

    def forward(self, x):
        x = self.pool(self.stem(x))
        maps = []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            maps.append(x)
        embedding = torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)
        logits = self.fc(embedding)
        if self.outputs == "stages_first":
            return (*maps, logits)
        if self.outputs == "embedding_first":
            return embedding, logits
        if self.outputs == "probabilities":
            return torch.softmax(logits, dim=1)
        return logits


VARIANTS = {
    "logits_only": (["logits"], False),
    "stages_first": (["stage1", "stage2", "stage3", "stage4", "logits"], True),
    "embedding_first": (["embedding", "output"], True),
    "probabilities": (["probabilities"], True),
}


def main():
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    expected = {}
    for name, (outputs, dynamic) in VARIANTS.items():
        torch.manual_seed(7)
        model = SmallResNet(name).eval()
        axes = {n: {0: "batch"} for n in ["input", *outputs]} if dynamic else None
        torch.onnx.export(
            model,
            torch.rand(1, 3, 64, 64),
            out / f"{name}.onnx",
            input_names=["input"],
            output_names=outputs,
            dynamic_axes=axes,
            opset_version=13,
        )
        expected[name] = {
            "outcome": outputs[-1],
            "classes": CLASSES,
            "stages": [f"/layer{i}/layer{i}.1/conv2/Conv" for i in range(1, 5)],
            "channels": WIDTHS,
            "spatial": [16, 8, 4, 2],
        }
    (out / "expected.json").write_text(json.dumps(expected, indent=1))


if __name__ == "__main__":
    main()
