"""The shipped audited Fashion-MNIST models (models/fmnist-*) in PyTorch, as they are served:
the graph of their model.onnx, where the export folded each BatchNorm into the convolution
before it. Module names follow the ONNX node scopes (`layer1.0.conv2` produces
`/layer1/layer1.0/conv2/Conv_output_0`), so `mint_audit.torch.attach` finds every tap of
the auditor configuration by itself.

    model = fmnist_model.load("models/fmnist-memorizing")   # reads model.pt, eval mode

The weights (model.pt, a state_dict) are written from model.onnx by
research/mint_research/export_torch_weights.py, which checks them against the training run's own outputs.
"""

import json
import os

import torch
import torch.nn.functional as F
from torch import nn

WIDTHS = (16, 32, 64, 128)


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride))

    def forward(self, x):
        out = F.relu(self.conv1(x))
        return F.relu(self.conv2(out) + self.shortcut(x))


class ResNet4(nn.Module):
    """4 stages of `blocks` basic blocks for 28x28 grey images; input: pixels / 255."""

    def __init__(self, blocks):
        super().__init__()
        self.register_buffer("mean", torch.tensor(0.0))
        self.register_buffer("std", torch.tensor(1.0))
        self.stem = nn.Sequential(nn.Conv2d(1, WIDTHS[0], 3, 1, 1), nn.Identity(), nn.ReLU())
        layers, cin = [], WIDTHS[0]
        for i, w in enumerate(WIDTHS):
            stride = 1 if i == 0 else 2
            layers.append(
                nn.Sequential(*[Block(cin if b == 0 else w, w, stride if b == 0 else 1) for b in range(blocks)])
            )
            cin = w
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.fc = nn.Linear(WIDTHS[-1], 10)

    def forward(self, x):
        x = self.stem((x - self.mean) / self.std)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def blocks_of(model_dir):
    with open(os.path.join(model_dir, "model.json")) as f:
        return json.load(f)["training"]["blocks"]


def load(model_dir):
    """The model of `model_dir` (models/fmnist-memorizing, ...) with its model.pt, in eval mode."""
    model = ResNet4(blocks_of(model_dir))
    model.load_state_dict(torch.load(os.path.join(model_dir, "model.pt")))
    return model.eval()
