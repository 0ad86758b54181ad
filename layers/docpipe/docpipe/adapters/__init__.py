"""Adapters: the only modules that import boto3. They translate ``ClientError`` into docpipe errors."""
