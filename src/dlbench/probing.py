"""The numbers behind the sharpness probe and the analysis commands, as plain functions."""
from collections.abc import Callable

import torch
from torch import nn
from torch.func import functional_call, hessian


def input_gradient_norm(model: nn.Module, loss_fn: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Mean over examples of ||d loss_i / d x_i|| (Frobenius norm over the input's dimensions).
    The losses here are per-example means and examples do not interact in eval mode, so one
    backward of N * loss gives every example's own gradient. (A class-weighted loss weighs each
    example by its class weight over the batch's mean weight.)"""
    x = x.detach().clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(loss_fn(model(x), y) * len(x), x)
    return grad.flatten(1).norm(dim=1).mean().item()


def pca(points: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Coordinates on the first k principal components (N, k), and every component's share of
    the variance."""
    centred = points - points.mean(0)
    _, s, v = torch.linalg.svd(centred, full_matrices=False)
    return centred @ v[:k].T, s.pow(2) / s.pow(2).sum()


def top_hessian_eigenvalue(loss_of: Callable[[], torch.Tensor], params: list[torch.Tensor], iterations: int = 20,
                           seed: int = 0) -> float:
    """The dominant eigenvalue of the Hessian of loss_of() in `params`, by power iteration on
    Hessian-vector products (double backward); the Hessian is never formed."""
    grads = torch.autograd.grad(loss_of(), params, create_graph=True)
    gen = torch.Generator().manual_seed(seed)
    v = [torch.randn(p.shape, generator=gen).to(p) for p in params]
    eigenvalue = 0.0
    for _ in range(iterations):
        norm = torch.sqrt(sum((u * u).sum() for u in v))
        v = [u / norm for u in v]
        hv = torch.autograd.grad(grads, params, grad_outputs=v, retain_graph=True)
        eigenvalue = sum((a * b).sum() for a, b in zip(v, hv)).item()  # Rayleigh quotient v'Hv
        v = [h.detach() for h in hv]
    return eigenvalue


def hessian_eigenvalues(model: nn.Module, loss_fn: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Every eigenvalue of the loss Hessian in the model's parameters (small models only: P x P)."""
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    shapes = [p.shape for _, p in model.named_parameters() if p.requires_grad]
    flat = torch.cat([p.detach().flatten() for _, p in model.named_parameters() if p.requires_grad])

    def loss_at(theta: torch.Tensor) -> torch.Tensor:
        params, offset = {}, 0
        for name, shape in zip(names, shapes):
            size = shape.numel()
            params[name] = theta[offset:offset + size].view(shape)
            offset += size
        return loss_fn(functional_call(model, params, (x,)), y)

    matrix = hessian(loss_at)(flat)  # (P, P)
    # float64: LAPACK's float32 solver fails to converge on the many repeated zeros of a ReLU net's Hessian
    return torch.linalg.eigvalsh(((matrix + matrix.T) / 2).double()).to(matrix.dtype)


def positive_eigenvalue_fraction(model: nn.Module, loss_fn: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """The 'minimal ratio': the fraction of the Hessian's eigenvalues above zero (1 at a strict minimum)."""
    eigenvalues = hessian_eigenvalues(model, loss_fn, x, y)
    tolerance = 1e-6 * eigenvalues.abs().max().clamp(min=1e-12)
    return (eigenvalues > tolerance).float().mean().item()
