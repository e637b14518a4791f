"""Outliers for human review: the scores and the review queue."""
