"""Fuzz targets for the rewriter and the request parsers; see fuzz/README.md."""
