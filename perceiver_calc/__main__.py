"""``python -m perceiver_calc``: the same as the ``perceiver-calc`` console script."""

from perceiver_calc.cli import main

main()
