"""The domain discriminator of AdvBCT (docs/method.md, "Adversarial").

It tells new embeddings (class 0) from old ones (class 1):
Linear(emb_dim, hidden) -> BatchNorm1d(hidden) -> ReLU -> Linear(hidden, 2), returning logits
(the reference's LogSoftmax + NLL is the same as cross-entropy on these logits).
"""
import torch
import torch.nn as nn


class Discriminator(nn.Module):
    """(B, emb_dim) un-normalised embeddings -> (B, 2) logits [new, old]."""

    def __init__(self, emb_dim: int = 256, hidden: int = 100):
        super().__init__()
        self.fc1 = nn.Linear(emb_dim, hidden)
        self.bn = nn.BatchNorm1d(hidden)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(hidden, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.relu(self.bn(self.fc1(x))))
