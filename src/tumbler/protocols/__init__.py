"""One pure module per knock kind: classify by shape, parse, verify; no I/O, no clock reads."""
