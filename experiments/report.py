"""``python -m experiments.report``: see :mod:`jaxcnn.commands.report`."""

import sys

from jaxcnn.commands.report import main

if __name__ == "__main__":
    sys.exit(main())
