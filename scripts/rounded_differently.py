"""`dlbench` with every linear layer's product summed in float64 and rounded once: the same
arithmetic as float32 to within one rounding, the sort of change another launcher, thread count or
BLAS makes. How far its numbers move from plain `dlbench`'s is how far rounding alone moves a run
(a long Adam or momentum run magnifies a 1e-7 difference to 1e-3..1e-2 of its loss); bench_fused.py
reads the fused launcher's differences against it.

    python scripts/rounded_differently.py train experiment=trajectory hydra/launcher=basic
"""
import sys

import torch
from torch.nn import functional
from torch.nn.modules import linear


class RoundedOnce:
    """torch.nn.functional with `linear` in float64."""

    def __getattr__(self, name):
        return getattr(functional, name)

    @staticmethod
    def linear(x, weight, bias=None):
        out = (x.double() @ weight.double().t()).to(x.dtype)
        return out + bias if bias is not None else out


if __name__ == "__main__":
    linear.F = RoundedOnce()  # what nn.Linear.forward calls
    from dlbench import cli
    cli.main(sys.argv[1:])
