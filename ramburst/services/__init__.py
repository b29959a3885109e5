"""What users consume on top of the daemons: pool (and later s3, fs)."""
