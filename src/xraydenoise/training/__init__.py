"""Training with Lightning (needs the ``torch`` extra)."""
