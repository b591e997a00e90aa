"""The model and data of docs/walkthrough.md: what an auditor is handed, made here so that the
walkthrough runs on a model no other part of the repo uses.

    .venv/bin/python -m mint_research.walkthrough_model WORK_DIR

Trains a small CNN (two convolutions, then a linear classifier; PyTorch names its tensors) on
600 seeded Fashion-MNIST training images until it memorises them, and writes
  WORK_DIR/my-model.onnx            input `pixels` [N, 1, 28, 28] = pixel / 255; outputs
                                    `embedding` [N, 64] first, then `class_scores` [N, 10];
                                    batch axis dynamic
  WORK_DIR/data/members.npy         the 600 training images, uint8 [600, 28, 28]
  WORK_DIR/data/members-labels.npy  their classes, int64
  WORK_DIR/data/others.npy          600 images of the test split, never trained on
  WORK_DIR/data/others-labels.npy
Needs Debian's python3-torch, python3-onnx and dataset-fashion-mnist. About 20 s on 2 cores.
"""

import os
import sys

import numpy as np
import torch
import torch.nn as nn

from mint_recipes import data as mintdata

SEED, MEMBERS, EPOCHS = 20261202, 600, 60


class SmallCnn(nn.Module):
    def __init__(self):
        super().__init__()
        self.block1 = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.block2 = nn.Sequential(nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.head = nn.Linear(64, 10)

    def forward(self, x):
        x = self.block2(self.block1(x))
        embedding = torch.flatten(nn.functional.adaptive_max_pool2d(x, 1), 1)
        return embedding, self.head(embedding)


def main():
    out = sys.argv[1]
    os.makedirs(os.path.join(out, "data"), exist_ok=True)
    torch.manual_seed(SEED)
    torch.set_num_threads(2)
    rng = np.random.default_rng(SEED)
    train_x, train_y = mintdata.fashion_mnist("train")
    test_x, test_y = mintdata.fashion_mnist("t10k")
    members = np.sort(rng.choice(len(train_x), MEMBERS, replace=False))
    others = np.sort(rng.choice(len(test_x), MEMBERS, replace=False))
    x = torch.from_numpy(train_x[members].astype(np.float32) / 255.0).unsqueeze(1)
    y = torch.from_numpy(train_y[members].astype(np.int64))

    model = SmallCnn()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(EPOCHS):
        for batch in torch.randperm(MEMBERS).split(50):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x[batch])[1], y[batch]).backward()
            optimizer.step()
    model.eval()
    with torch.no_grad():
        train_acc = (model(x)[1].argmax(1) == y).float().mean().item()
        tx = torch.from_numpy(test_x[others].astype(np.float32) / 255.0).unsqueeze(1)
        test_acc = (model(tx)[1].argmax(1).numpy() == test_y[others]).mean()
    torch.onnx.export(
        model,
        x[:1],
        os.path.join(out, "my-model.onnx"),
        input_names=["pixels"],
        output_names=["embedding", "class_scores"],
        opset_version=13,
        dynamic_axes={n: {0: "batch"} for n in ["pixels", "embedding", "class_scores"]},
    )
    np.save(os.path.join(out, "data/members.npy"), train_x[members])
    np.save(os.path.join(out, "data/members-labels.npy"), train_y[members].astype(np.int64))
    np.save(os.path.join(out, "data/others.npy"), test_x[others])
    np.save(os.path.join(out, "data/others-labels.npy"), test_y[others].astype(np.int64))
    print(f"my-model: train accuracy {train_acc:.2f}, test accuracy {test_acc:.2f} (it memorised its 600 images)")


if __name__ == "__main__":
    main()
