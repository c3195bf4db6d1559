"""Evaluation: per-image scores of every method on real radiographs, tables, figures and the report."""
