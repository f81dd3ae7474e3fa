"""Performance: FLOP counts, timing harness and the benchmark behind scripts/benchmark.py."""
