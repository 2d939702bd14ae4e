"""Dev-only local stack: the SAM template's HTTP API, functions, tables and buckets on localhost."""
