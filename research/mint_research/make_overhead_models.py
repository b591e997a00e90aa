"""Realistic audited models for the end-to-end overhead benchmark (benches/overhead.rs): a
ResNet-18 at 224x224 and a ResNet-50 at 112x112 (torchvision's architectures, written out
here: Debian ships no torchvision), seeded random weights, exported from PyTorch with the four
stage outputs declared as graph outputs beside the logits, and for each a random Vanilla MINT
head over the stages' channel maxima and the logits, with its auditor configuration.

usage: .venv/bin/python -m mint_research.make_overhead_models OUT_DIR
Writes OUT_DIR/{resnet18_224,resnet50_112}/{model.onnx,head.onnx,auditor.json}. Weights are
random: the benchmark measures time, not membership.
"""

import hashlib
import json
import sys
from pathlib import Path

import torch
from torch import nn


class Basic(nn.Module):
    expansion = 1

    def __init__(self, cin, width, stride):
        super().__init__()
        cout = width * self.expansion
        self.body = nn.Sequential(
            nn.Conv2d(cin, width, 3, stride, 1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.Conv2d(width, cout, 3, 1, 1, bias=False),
            nn.BatchNorm2d(cout),
        )
        self.short = nn.Sequential()
        if stride != 1 or cin != cout:
            self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        return torch.relu(self.body(x) + self.short(x))


class Bottleneck(Basic):
    expansion = 4

    def __init__(self, cin, width, stride):
        nn.Module.__init__(self)
        cout = width * self.expansion
        self.body = nn.Sequential(
            nn.Conv2d(cin, width, 1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, stride, 1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.Conv2d(width, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        )
        self.short = nn.Sequential()
        if stride != 1 or cin != cout:
            self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))


class ResNet(nn.Module):
    def __init__(self, block, blocks, classes=1000):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(3, 2, 1)
        )
        stages, cin = [], 64
        for i, (width, n) in enumerate(zip([64, 128, 256, 512], blocks)):
            layers = []
            for b in range(n):
                layers.append(block(cin, width, 2 if (b == 0 and i > 0) else 1))
                cin = width * block.expansion
            stages.append(nn.Sequential(*layers))
        self.stages = nn.ModuleList(stages)
        self.fc = nn.Linear(cin, classes)
        self.channels = [w * block.expansion for w in [64, 128, 256, 512]]

    def forward(self, x):
        x = self.stem(x)
        maps = []
        for stage in self.stages:
            x = stage(x)
            maps.append(x)
        return (*maps, self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)))


def randomize_bn(model, gen):
    # Random running statistics, so that the folded convolutions are not identities.
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)


SPECS = {"resnet18_224": (Basic, [2, 2, 2, 2], 224), "resnet50_112": (Bottleneck, [3, 4, 6, 3], 112)}


def build(name):
    """The seeded PyTorch model `name` (a key of SPECS) and its input side: the same weights
    every time, so benches/gpu_overhead.py runs the network the ONNX files hold."""
    block, blocks, side = SPECS[name]
    gen = torch.Generator().manual_seed(2026)
    torch.manual_seed(2026)
    model = ResNet(block, blocks).eval()
    randomize_bn(model, gen)
    return model, side


def main():
    out = Path(sys.argv[1])
    for name in SPECS:
        d = out / name
        d.mkdir(parents=True, exist_ok=True)
        model, side = build(name)
        names = ["stage1", "stage2", "stage3", "stage4", "logits"]
        x = torch.rand(1, 3, side, side)
        with torch.no_grad():
            maps = model(x)
        torch.onnx.export(
            model,
            x,
            d / "model.onnx",
            input_names=["input"],
            output_names=names,
            dynamic_axes={n: {0: "batch"} for n in ["input", *names]},
            opset_version=13,
        )
        widths = model.channels + [1000]
        head = nn.Sequential(nn.Linear(sum(widths), 64), nn.ReLU(), nn.Linear(64, 1), nn.Sigmoid()).eval()
        torch.onnx.export(
            head,
            torch.rand(1, sum(widths)),
            d / "head.onnx",
            input_names=["features"],
            output_names=["score"],
            dynamic_axes={"features": {0: "batch"}, "score": {0: "batch"}},
            opset_version=13,
        )
        taps = [
            {"name": n, "channels": c, "kind": "activation_map", "tensor": n, "spatial": list(m.shape[2:])}
            for n, c, m in zip(names[:4], widths[:4], maps[:4])
        ]
        taps.append({"name": "logits", "channels": 1000, "kind": "outcome", "tensor": "logits"})
        config = {
            "model": {"id": name, "version": "bench", "onnx": "model.onnx", "input_shape": [3, side, side]},
            "taps": taps,
            "head": {
                "kind": "vanilla",
                "path": "head.onnx",
                "sha256": hashlib.sha256((d / "head.onnx").read_bytes()).hexdigest(),
                "threshold": 0.5,
            },
            "queue": {"capacity": 4096},
            "batching": {"max_batch": 64, "max_wait_ms": 2},
            "sampling": {"one_in": 1},
            "workers": 1,
        }
        (d / "auditor.json").write_text(json.dumps(config, indent=1))
        print(f"{name}: {side}x{side}, taps {widths}, {sum(widths)} features -> {d}")


if __name__ == "__main__":
    main()
