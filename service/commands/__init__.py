"""One module per CLI command: parse results in, exit code out."""
