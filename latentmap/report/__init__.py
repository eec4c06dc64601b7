"""Report building blocks: image grids, plots, HTML pages."""
