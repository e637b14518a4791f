"""What users say about hits and images."""
