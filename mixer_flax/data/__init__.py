"""Input data: tfds / image-folder sources, host preprocessing, the batch iterators."""
