"""fanmill cache package."""
