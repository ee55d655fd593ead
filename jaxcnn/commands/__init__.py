"""The command-line programs beyond a single study: ``all``, ``sweep`` and ``report``.

Each module's ``main(argv)`` is what ``python -m experiments.<name>`` and ``jaxcnn <name>``
run; ``experiments/`` holds only those entry points, so an installed ``jaxcnn`` needs no
``experiments`` package.
"""
