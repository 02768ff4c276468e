"""Shared by the example scripts: save a figure when matplotlib is installed."""

import os


def save_figure(draw, filename):
    """Call ``draw(plt)`` and save the figure it returns as ``filename``.

    Without matplotlib (``pip install fastode[plot]``) the plot is skipped.
    The ``FASTODE_EXAMPLE_DIR`` environment variable sets the folder, the
    current one by default.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed, so no plot (pip install fastode[plot])")
        return
    figure = draw(plt)
    path = os.path.join(os.environ.get("FASTODE_EXAMPLE_DIR", "."), filename)
    figure.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(figure)
    print(f"saved {path}")
