"""``python -m experiments.all``: see :mod:`jaxcnn.commands.all_studies`."""

import sys

from jaxcnn.commands.all_studies import main

if __name__ == "__main__":
    sys.exit(main())
