"""Data files shipped with skin-cnn (ICD-10 category map, example manifests)."""
