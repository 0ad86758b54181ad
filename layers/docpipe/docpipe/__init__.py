"""docpipe's shared layer: configuration, errors, job and file models, storage layout, and the AWS adapters."""

__version__ = "0.1.0"
