"""``python -m engan.runtime.cli``: the same as the ``engan-infer`` console script (signal handling included)."""
from engan.runtime.entry import main

main()
