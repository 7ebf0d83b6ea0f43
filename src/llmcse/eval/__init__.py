"""Evaluation: STS, transfer probes, BEIR retrieval, embedding geometry, and the results file."""
