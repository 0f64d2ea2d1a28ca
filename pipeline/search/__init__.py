"""Full-text search: the query language and the index's terms."""
