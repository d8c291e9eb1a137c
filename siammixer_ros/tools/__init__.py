"""Command-line tools (model info, benchmarks)."""
