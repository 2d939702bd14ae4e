"""ProcessUploadFunction: the S3 ObjectCreated trigger that verifies and measures uploads."""
