"""Matplotlib figures without pyplot state, rendered to PNG bytes: the one figure helper.

Every figure draws from one colour-blind-safe palette (:data:`PALETTE`, Okabe and Ito's eight
colours; :func:`categorical_colours` for ten classes), and :func:`figure_png` writes into each PNG the
smallest text size it holds, in pixels at the figure's own resolution (``TEXT_PX_KEY``), which the
browser test holds to at least :data:`MIN_TEXT_PX`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    from matplotlib.axes import Axes
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure
    from matplotlib.text import Text

DPI = 110
# Okabe & Ito's colour-blind-safe palette: blue, orange, bluish green, vermillion, reddish purple, sky blue,
# yellow, black (in the order a plot's lines take them)
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")
SERIES = PALETTE[:-1]  # the palette without black, which marks calibration points
MARKERS = ("o", "s", "D", "^", "v", "P", "X")  # series told apart by marker too, so a figure reads in grey
SEQUENTIAL = "viridis"  # heat maps: perceptually uniform and readable without colour vision
REFERENCE = "#555555"  # reference lines and curves (N(0, 1), 1 = nothing lost, ...)
MIN_TEXT_PX = 9  # the smallest text a figure may hold, in px at its own resolution (the browser test checks it)
TEXT_PX_KEY = "latentmap:min-text-px"  # the PNG text chunk holding a figure's smallest text size in px
CONTENT_WIDTH_IN = 9.6  # inches at DPI that fit the report's text column (1100 px less its padding)


def categorical_colours() -> ListedColormap:
    """A colour map of ten colours for ten classes: :data:`PALETTE` (less yellow, hard on white) and three
    of Paul Tol's muted colours."""
    from matplotlib.colors import ListedColormap

    return ListedColormap([c for c in PALETTE if c != "#F0E442"] + ["#999933", "#882255", "#999999"], name="classes")


def colour(i: int) -> str:
    """The ``i``-th colour of :data:`PALETTE` (cycling)."""
    return PALETTE[i % len(PALETTE)]


def new_figure(width: float = 6.5, height: float = 3.2) -> Figure:
    """A ``width`` × ``height`` inch figure at :data:`DPI` on its own Agg canvas, whose axes cycle through
    :data:`PALETTE`."""
    # Figure + Agg canvas directly: no pyplot state and no global backend switch
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    class ReportFigure(Figure):
        def add_subplot(self, *args: Any, **kwargs: Any) -> Axes:  # every axes cycles through the palette
            ax = super().add_subplot(*args, **kwargs)
            ax.set_prop_cycle(color=list(PALETTE))
            return ax

    fig = ReportFigure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def smallest_text_px(fig: Figure) -> float | None:
    """The smallest size of any visible, non-empty text of ``fig`` (titles, labels, ticks, legends, colour
    bars, annotations) in px at the figure's resolution; None for a figure without text."""
    from matplotlib.text import Text

    sizes = [float(t.get_fontsize()) * fig.dpi / 72  # a size in points (the stub also allows a name)
             for t in fig.findobj(Text)
             if t.get_visible() and t.get_text().strip() and _shown(t)]
    return min(sizes) if sizes else None


def _shown(text: Text) -> bool:
    parent = getattr(text, "axes", None)
    return parent is None or parent.get_visible()


def figure_png(fig: Figure, layout: bool = True) -> bytes:
    """``fig`` as PNG bytes, laid out tightly (``layout=False``: as the caller laid it out), with its smallest
    text size in px recorded under ``TEXT_PX_KEY``."""
    import io

    buffer = io.BytesIO()
    if layout:
        fig.tight_layout()
    fig.canvas.draw()
    smallest = smallest_text_px(fig)
    metadata = {TEXT_PX_KEY: f"{smallest:.2f}"} if smallest is not None else {}
    fig.savefig(buffer, format="png", metadata=metadata)
    return buffer.getvalue()


PLOT_FLOOR = 1e-7  # on a log axis, per-image errors below this are drawn at it


def histogram_legend(label: str, values: np.typing.ArrayLike, floor: float, fmt: Callable[[float], str]) -> str:
    """A histogram line's legend: the true mean of ``values``, written by ``fmt`` (the formatter of the table
    that shows the same mean), and how many values lie below the plot's ``floor`` and are drawn at it."""
    import numpy as np

    array = np.asarray(values, dtype=np.float64)
    text = f"{label} (mean {fmt(float(np.mean(array)))}"
    below = int((array < floor).sum())
    if below:
        text += f"; {below} below {fmt(floor)}, drawn at {fmt(floor)}"
    return text + ")"


def histograms_png(series: Mapping[str, np.typing.ArrayLike], xlabel: str, title: str = "", log_x: bool = True,
                   bins: int = 50) -> bytes:
    """Step histograms of several arrays on shared bins (share of each array's values), one line each,
    the legend giving each array's true mean (as the tables write it): per-image errors by model or target set.
    On a log axis, values below :data:`PLOT_FLOOR` are drawn at it and the legend says how many."""
    import numpy as np

    from latentmap.report.tables import sig

    values = {k: array for k, v in series.items() if len(array := np.asarray(v, dtype=float))}
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
            # the ignore: matplotlib's stub leaves out arrays of bin edges, which hist takes
            ax.hist(np.clip(v, edges[0], edges[-1]), bins=edges,  # type: ignore[arg-type]
                    histtype="step", lw=1.2,
                    weights=np.full(len(v), 1 / len(v)),
                    label=histogram_legend(name, v, edges[0], sig) if log_x else f"{name} (mean {sig(v.mean())})")
        ax.legend(fontsize=7)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("share of images")
    if title:
        ax.set_title(title, fontsize=10)
    return figure_png(fig)
