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
    the picture as an (H, W, 3) uint8 array, for the image sinks of a run (TensorBoard). One render
    serves both: the file is written from the rendered pixels, not drawn again."""
    import numpy as np
    from matplotlib.image import imsave

    fig.canvas.draw()
    rgba = np.asarray(fig.canvas.buffer_rgba())  # (H, W, 4) uint8, at the figure's dpi
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        imsave(path, rgba)
    image = rgba[..., :3].copy() if pixels else None
    pyplot().close(fig)
    return image
