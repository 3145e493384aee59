"""fanmill crawler package."""
