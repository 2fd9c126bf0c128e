"""One module per extractor; each defines ``SPEC`` (cheap) and ``create()`` (loads models)."""
