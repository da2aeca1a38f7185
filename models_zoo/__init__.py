"""Reference architectures (random weights) for tests, demos and benchmarks."""
