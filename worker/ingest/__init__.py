"""Dataset ingestion: fetch a folder or a zip from Azure Blob Storage or S3 to local disk."""
