"""Network-namespace lab for the demo, the tests and the benchmarks."""
