"""fanmill dedup package."""
