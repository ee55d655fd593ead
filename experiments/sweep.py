"""``python -m experiments.sweep``: see :mod:`jaxcnn.commands.sweep`."""

import sys

from jaxcnn.commands.sweep import main

if __name__ == "__main__":
    sys.exit(main())
