"""What an image is like by itself: quality scores (sharpness, exposure, resolution) and the
NSFW moderation score."""

from lookalike.quality.scores import QualityScore, quality_score

__all__ = ["QualityScore", "quality_score"]
