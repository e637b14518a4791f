"""Vector engines behind one interface, `VectorIndex` (see `base`); one module per engine."""
