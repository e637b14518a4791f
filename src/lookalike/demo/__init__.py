"""Sample photos that ship inside installed packages, for the demo and tests."""
