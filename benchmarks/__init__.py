"""engan benchmark suite: ``pytest benchmarks`` (full) or ``pytest benchmarks --quick`` (CI)."""
