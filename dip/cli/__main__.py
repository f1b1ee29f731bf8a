"""``python -m dip.cli``: what the ``dip`` script runs (and what a launcher such as torchrun starts)."""

from . import main

main()
