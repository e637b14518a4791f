"""The embedding service: the HTTP face of the models, a second app beside `api/`."""
