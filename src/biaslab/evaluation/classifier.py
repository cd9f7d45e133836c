"""The evaluation classifier: a small CNN per dataset, trained on real held-in images.

It labels generated samples (with a confidence, so unrecognisable samples are visible) and
doubles as the offline ``classifier`` feature backbone for LPIPS-style diversity and kNN
similarity (``feature_maps`` / ``embed``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from biaslab.base.images import to_model_range
from biaslab.base.io import CorruptArtifactError, load_torch, save_torch

#: The rule that writes the classifier files (named in the error for a damaged one).
CLASSIFIER_RULE = "train_classifier"


class SmallCNN(nn.Module):
    """Three 3x3 conv layers (32, 64, 64 channels, the last two with stride 2), ReLU,
    adaptive average pooling to 4x4 (6 and 9 differ by a rotation, so the head must keep
    the layout), a 128-unit hidden layer, a linear head."""

    def __init__(self, in_channels: int, n_classes: int):
        super().__init__()
        self.in_channels = in_channels
        self.n_classes = n_classes
        self.convs = nn.ModuleList(
            [
                nn.Conv2d(in_channels, 32, 3, padding=1),
                nn.Conv2d(32, 64, 3, stride=2, padding=1),
                nn.Conv2d(64, 64, 3, stride=2, padding=1),
            ]
        )
        self.hidden = nn.Linear(64 * 16, 128)
        self.head = nn.Linear(128, n_classes)

    def feature_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Post-ReLU activations of each conv layer (N x C x H x W)."""
        maps = []
        for conv in self.convs:
            x = F.relu(conv(x))
            maps.append(x)
        return maps

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features (N x 128)."""
        h = F.adaptive_avg_pool2d(self.feature_maps(x)[-1], 4).flatten(1)
        return F.relu(self.hidden(h))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))


@dataclass(frozen=True)
class ClassifierConfig:
    epochs: int = 8
    batch_size: int = 64
    lr: float = 1e-3
    min_accuracy: float = 0.95
    seed: int = 0


class AccuracyTooLowError(RuntimeError):
    pass


def train_classifier(
    base: dict[str, np.ndarray], cfg: ClassifierConfig
) -> tuple[SmallCNN, pd.DataFrame]:
    """Train on all held-in images of every class; score on the held-out ones.

    Labels are class indices into ``base["classes"]``. Raises ``AccuracyTooLowError`` when the
    held-out accuracy is below ``cfg.min_accuracy``.
    """
    classes = base["classes"]
    to_idx = {int(c): i for i, c in enumerate(classes)}
    x_in = to_model_range(base["x_in"])
    y_in = torch.tensor([to_idx[int(c)] for c in base["y_in"]])
    x_out = to_model_range(base["x_out"])
    y_out = torch.tensor([to_idx[int(c)] for c in base["y_out"]])

    torch.manual_seed(cfg.seed)
    model = SmallCNN(x_in.shape[1], len(classes))
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    gen = torch.Generator().manual_seed(cfg.seed)
    model.train()
    for _ in range(cfg.epochs):
        perm = torch.randperm(len(x_in), generator=gen)
        for i in range(0, len(perm), cfg.batch_size):
            b = perm[i : i + cfg.batch_size]
            loss = F.cross_entropy(model(x_in[b]), y_in[b])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    model.eval()
    pred = predict(model, x_out)[0]
    rows = [{"class": "all", "n": len(y_out), "accuracy": float((pred == y_out.numpy()).mean())}]
    for i, c in enumerate(classes):
        m = y_out.numpy() == i
        rows.append(
            {
                "class": str(int(c)),
                "n": int(m.sum()),
                "accuracy": float((pred[m] == i).mean()) if m.any() else float("nan"),
            }
        )
    acc = pd.DataFrame(rows)
    overall = rows[0]["accuracy"]
    if overall < cfg.min_accuracy:
        raise AccuracyTooLowError(
            f"evaluation classifier held-out accuracy {overall:.4f} is below "
            f"classifier.min_accuracy={cfg.min_accuracy}; train longer (classifier.epochs) "
            "or check the data"
        )
    return model, acc


@torch.no_grad()
def predict(
    model: SmallCNN, x: torch.Tensor, batch_size: int = 512
) -> tuple[np.ndarray, np.ndarray]:
    """Class indices and softmax probabilities for model-range images ``x`` (the model runs on
    its own device; the results are on the CPU)."""
    model.eval()
    device = next(model.parameters()).device
    with torch.no_grad():
        probs = [
            F.softmax(model(x[i : i + batch_size].to(device)), dim=1).float().cpu()
            for i in range(0, len(x), batch_size)
        ]
    p = torch.cat(probs).numpy()
    return p.argmax(1), p


def save_classifier(model: SmallCNN, classes: np.ndarray, path: str | Path) -> None:
    """Save the weights, input channels and classes atomically, with their content hash."""
    save_torch(
        {
            "state_dict": model.state_dict(),
            "in_channels": model.in_channels,
            "classes": [int(c) for c in classes],
        },
        path,
    )


def load_classifier(
    path: str | Path, device: str | torch.device | None = None
) -> tuple[SmallCNN, np.ndarray]:
    """The saved classifier on ``device`` (default: ``biaslab.models.unets.default_device()``) and
    its classes. ``biaslab.base.io.CorruptArtifactError`` (naming the file and the rule to rerun)
    when the file is truncated, damaged or has no content hash."""
    from biaslab.models.unets import default_device

    state = load_torch(path, map_location="cpu", rule=CLASSIFIER_RULE)
    try:
        model = SmallCNN(state["in_channels"], len(state["classes"]))
        model.load_state_dict(state["state_dict"])
    except (KeyError, TypeError, RuntimeError) as e:
        raise CorruptArtifactError(
            path, f"not a biaslab classifier ({type(e).__name__}: {e})", rule=CLASSIFIER_RULE
        ) from e
    return model.to(device or default_device()).eval(), np.array(state["classes"])
