"""`make bench-dedup`: dedup against jdupes, rdfind, fdupes and rmlint on seeded corpora."""
