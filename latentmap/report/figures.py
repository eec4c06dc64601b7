"""Matplotlib figures without pyplot state, rendered to PNG bytes: the one figure helper."""

from __future__ import annotations


def new_figure(width: float = 6.5, height: float = 3.2):
    # Figure + Agg canvas directly: no pyplot state and no global backend switch
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(fig)
    return fig


def figure_png(fig) -> bytes:
    import io

    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


PLOT_FLOOR = 1e-7  # on a log axis, per-image errors below this are drawn at it


def histogram_legend(label: str, values, floor: float, fmt) -> str:
    """A histogram line's legend: the true mean of ``values``, written by ``fmt`` (the formatter of the table
    that shows the same mean), and how many values lie below the plot's ``floor`` and are drawn at it."""
    import numpy as np

    values = np.asarray(values, dtype=np.float64)
    text = f"{label} (mean {fmt(float(np.mean(values)))}"
    below = int((values < floor).sum())
    if below:
        text += f"; {below} below {fmt(floor)}, drawn at {fmt(floor)}"
    return text + ")"


def histograms_png(series: dict, xlabel: str, title: str = "", log_x: bool = True, bins: int = 50) -> bytes:
    """Step histograms of several arrays on shared bins (share of each array's values), one line each,
    the legend giving each array's true mean (as the tables write it): per-image errors by model or target set.
    On a log axis, values below :data:`PLOT_FLOOR` are drawn at it and the legend says how many."""
    import numpy as np

    from latentmap.report.tables import sig

    values = {k: np.asarray(v, dtype=float) for k, v in series.items() if len(v)}
    fig = new_figure(6.5, 3.2)
    ax = fig.subplots()
    if values:
        everything = np.concatenate(list(values.values()))
        low, high = float(everything.min()), float(everything.max())
        if log_x:
            low = max(low, PLOT_FLOOR)
            edges = np.logspace(np.log10(low), np.log10(max(high, low * 1.01)), bins + 1)
            ax.set_xscale("log")
        else:
            edges = np.linspace(low, max(high, low + 1e-12), bins + 1)
        for name, v in values.items():
            ax.hist(np.clip(v, edges[0], edges[-1]), bins=edges, histtype="step", lw=1.2,
                    weights=np.full(len(v), 1 / len(v)),
                    label=histogram_legend(name, v, edges[0], sig) if log_x else f"{name} (mean {sig(v.mean())})")
        ax.legend(fontsize=7)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("share of images")
    if title:
        ax.set_title(title, fontsize=10)
    return figure_png(fig)
