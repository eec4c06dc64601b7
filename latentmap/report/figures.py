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
