"""`python -m lookalike.cli`, as the benchmarks start it."""

from lookalike.cli import main

main()
