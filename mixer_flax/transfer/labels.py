"""VTAB-1k label maps: full tfds example -> {'image': encoded bytes, 'label': int64 ()}.

Each function is a `config.record_fn` ('mixer_flax.transfer.labels:<name>'): the input
pipeline applies it to every example of the split before shuffling, with the image still
encoded. The rules are the benchmark's own (Zhai et al. 2019, "A large-scale study of
representation learning with the visual task adaptation benchmark"; the task definitions
of google-research/task_adaptation):

  clevr_count          number of objects - 3 (3..10 objects -> 8 classes)
  clevr_distance       depth of the closest object, bins at 8, 8.5, 9, 9.5, 10 (6 classes)
  kitti_distance       depth of the closest vehicle (Car, Van, Truck), bins at 8, 20, 999;
                       class 3 = no vehicle (4 classes)
  dsprites_location    x position, 32 values -> 16 classes (pairs merged)
  dsprites_orientation orientation, 40 values -> 16 classes (floor(o / 2.5))

dSprites images are stored with pixel values 0/1; they are scaled to 0/255 (and stay
1-channel PNG: decoding replicates grey to RGB, as for smallNORB).
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf

CLEVR_DISTANCE_BINS = (0.0, 8.0, 8.5, 9.0, 9.5, 10.0, 100.0)
KITTI_DISTANCE_BINS = (-100.0, 8.0, 20.0, 999.0)
KITTI_NO_VEHICLE_DEPTH = 1000.0  # Beyond the last bin: "no vehicle" is its own class.
KITTI_VEHICLE_TYPES = 3  # tfds kitti object types 0, 1, 2 = Car, Van, Truck.
DSPRITES_CLASSES = 16


def bin_index(value: tf.Tensor, edges: Sequence[float]) -> tf.Tensor:
  """Index of the last edge strictly below `value` (int64 ()); edges ascending."""
  below = tf.cast(tf.constant(edges, tf.float32) < tf.cast(value, tf.float32), tf.int64)
  return tf.reduce_sum(below) - 1


def _record(example: dict, label: tf.Tensor, image: tf.Tensor | None = None) -> dict:
  return {'image': example['image'] if image is None else image,
          'label': tf.cast(label, tf.int64)}


def clevr_count(example: dict) -> dict:
  """CLEVR: how many objects (3..10) -> 0..7."""
  return _record(example, tf.size(example['objects']['size'], out_type=tf.int64) - 3)


def clevr_distance(example: dict) -> dict:
  """CLEVR: depth of the closest object (pixel_coords[:, 2]) binned into 6 classes."""
  depth = tf.reduce_min(example['objects']['pixel_coords'][:, 2])
  return _record(example, bin_index(depth, CLEVR_DISTANCE_BINS))


def kitti_distance(example: dict) -> dict:
  """KITTI: depth (location[:, 2], metres) of the closest vehicle, 4 classes."""
  objects = example['objects']
  is_vehicle = tf.cast(objects['type'], tf.int64) < KITTI_VEHICLE_TYPES
  depths = tf.boolean_mask(objects['location'][:, 2], is_vehicle)
  depth = tf.reduce_min(tf.concat([depths, [KITTI_NO_VEHICLE_DEPTH]], axis=0))
  return _record(example, bin_index(depth, KITTI_DISTANCE_BINS))


def _dsprites_image(encoded: tf.Tensor) -> tf.Tensor:
  """0/1 PNG -> 0/255 PNG (one channel)."""
  pixels = tf.io.decode_png(encoded, channels=1)
  return tf.io.encode_png(pixels * tf.constant(255, tf.uint8))


def _dsprites(example: dict, key: str, num_values: int) -> dict:
  # Merge neighbouring values: value v -> floor(v / (num_values / 16)).
  factor = num_values / DSPRITES_CLASSES
  label = tf.math.floordiv(tf.cast(example[key], tf.float32), factor)
  return _record(example, label, _dsprites_image(example['image']))


def dsprites_location(example: dict) -> dict:
  """dSprites: x position (32 values) -> 16 classes."""
  return _dsprites(example, 'label_x_position', 32)


def dsprites_orientation(example: dict) -> dict:
  """dSprites: orientation (40 values) -> 16 classes."""
  return _dsprites(example, 'label_orientation', 40)
