"""A small TensorFlow Recommenders retrieval pipeline: the demo and the end-to-end tests use it."""
