"""IngestFunction: hash-and-dedupe of raw uploads into content-addressed storage."""
