"""``python -m latentmap`` runs the CLI, so that ``torchrun --nproc_per_node N -m latentmap <command>`` works."""

import sys

from latentmap.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
