"""Models of token pairs (a, b) -> a class, for the modular-arithmetic (grokking) tasks.

Inputs are (B, T) token ids below `num_classes`: the operands are residues mod p, like the answer.
"""
import math

import torch
from torch import nn
from torch.nn import functional as F

from dlbench.models.registry import register_model
from dlbench.models.layers import dense_stack


class TokenMLP(nn.Module):
    def __init__(self, tokens: int, vocab: int, num_classes: int, embed: int | None, hidden: list[int],
                 activation: str):
        super().__init__()
        self.vocab = vocab
        self.embed = nn.Embedding(vocab, embed) if embed else None
        self.net = nn.Sequential(*dense_stack(tokens * (embed or vocab), hidden, num_classes, activation,
                                              batchnorm=False, dropout=0.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T) token ids
        h = self.embed(x) if self.embed is not None else F.one_hot(x, self.vocab).float()  # (B, T, E)
        return self.net(h.flatten(1))


@register_model
def token_mlp(in_shape: tuple[int, ...], num_classes: int, embed: int | None = 128, hidden: list[int] = (512,),
              activation: str = "relu") -> nn.Module:
    """Each token one-hot (embed: null) or embedded (embed: width), concatenated, then an MLP."""
    return TokenMLP(math.prod(in_shape), num_classes, num_classes, embed, list(hidden), activation)


class Transformer(nn.Module):
    """Token embeddings plus a learned '=' query token at the end, learned positions, `depth`
    pre-norm self-attention blocks; the answer is read from the '=' position (as the paper's
    decoder reads the token after '=')."""

    def __init__(self, tokens: int, vocab: int, num_classes: int, dim: int, depth: int, heads: int,
                 mlp_ratio: int, dropout: float):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.query = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.pos = nn.Parameter(torch.randn(1, tokens + 1, dim) * 0.02)
        block = nn.TransformerEncoderLayer(dim, heads, dim * mlp_ratio, dropout, activation="relu",
                                           batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(block, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T) token ids
        h = torch.cat([self.embed(x), self.query.expand(len(x), -1, -1)], dim=1) + self.pos  # (B, T+1, D)
        return self.head(self.norm(self.blocks(h)[:, -1]))  # (B, classes)


@register_model
def transformer(in_shape: tuple[int, ...], num_classes: int, dim: int = 128, depth: int = 2, heads: int = 4,
                mlp_ratio: int = 4, dropout: float = 0.0) -> nn.Module:
    if dim % heads:
        raise ValueError(f"transformer: dim={dim} must be a multiple of heads={heads}")
    return Transformer(math.prod(in_shape), num_classes, num_classes, dim, depth, heads, mlp_ratio, dropout)
