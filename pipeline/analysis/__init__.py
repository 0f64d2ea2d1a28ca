"""Findings from coded segments: agreement between coders, and the collection at a glance."""
