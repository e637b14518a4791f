"""Visual quality of ingested images: simple, explainable scores, and outlier scores."""

from lookalike.quality.anomalies import AnomalyScores, anomaly_scores, neighbours_of
from lookalike.quality.scores import QualityScore, quality_score

__all__ = ["AnomalyScores", "QualityScore", "anomaly_scores", "neighbours_of", "quality_score"]
