"""The local stack: Azurite, an S3-protocol server and the API on loopback, for dev and tests."""
