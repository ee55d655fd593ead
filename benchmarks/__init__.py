"""Throughput benchmarks against the PyTorch reference (``python -m benchmarks.throughput``)."""
