"""The ``latentmap`` command line (installed as ``latentmap.cli``)."""
