"""The Ceph backend: one small unit per daemon kind, the generated conf, keys, admin client."""
