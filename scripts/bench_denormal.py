"""How much denormal weights slow a matmul on this CPU, and what flushing them gives, in one process.

    python scripts/bench_denormal.py

A 128x512 batch times a 512x512 weight matrix whose entries are denormal (2.6e-41, as the
regularisers study's L2 arm left its weights), each way in turn, on every thread torch uses and on
one: flags off; torch.set_flush_denormal(True) in the calling thread only; dlbench's
flush_denormals(True) in every OpenMP worker too. Prints milliseconds per matmul and the ratio to
the same matmul against normal weights.
"""
import time

import torch

from dlbench.threads import flush_denormals

REPEATS = 20


def per_matmul(x: torch.Tensor, w: torch.Tensor) -> float:
    x @ w
    start = time.perf_counter()
    for _ in range(REPEATS):
        x @ w
    return (time.perf_counter() - start) / REPEATS * 1e3


def main() -> None:
    x = torch.randn(128, 512)
    denormal = torch.full((512, 512), 2.6e-41)  # made before any flag is set: it stays denormal
    normal = torch.randn(512, 512) * 0.05
    for threads in sorted({torch.get_num_threads(), 1}, reverse=True):
        torch.set_num_threads(threads)
        flush_denormals(False)
        base = per_matmul(x, normal)
        rows = [("normal weights", base)]
        rows.append(("denormal, flags off", per_matmul(x, denormal)))
        torch.set_flush_denormal(True)
        rows.append(("denormal, torch.set_flush_denormal (calling thread)", per_matmul(x, denormal)))
        flush_denormals(True)
        rows.append(("denormal, flush_denormals (every thread)", per_matmul(x, denormal)))
        print(f"{threads} thread(s):")
        for name, ms in rows:
            print(f"  {name:<55} {ms:8.2f} ms  {ms / base:7.1f}x")


if __name__ == "__main__":
    main()
