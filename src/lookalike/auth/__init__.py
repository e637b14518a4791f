"""Who is calling: bearer tokens (JWT) and API keys."""
