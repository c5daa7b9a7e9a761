"""Data nodes on storage: atomic writes, formats, targets, data versions and records."""
