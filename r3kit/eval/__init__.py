"""Evaluation: episodes on a split with the retry controls, checkpoint selection on validation, exact tests
and intervals, and the forgetting check through lm-evaluation-harness.
"""
