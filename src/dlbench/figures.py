"""Figures: matplotlib loaded only when something is drawn, and the one way a figure is saved."""
from pathlib import Path


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend (no display here, none needed), imported
    when a plot is made so that commands which draw nothing do not pay for it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path | None, pixels: bool = False):
    """Write fig to path as a PNG (path None: no file) and close it. With pixels=True, also return
    the picture as an (H, W, 3) uint8 array, for the image sinks of a run (TensorBoard)."""
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100)
    image = None
    if pixels:
        import numpy as np

        fig.canvas.draw()
        image = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    pyplot().close(fig)
    return image
