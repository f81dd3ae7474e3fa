"""Per-example image preprocessing in TensorFlow (runs inside tf.data).

Every function works on one example and is stateless: randomness comes from an
explicit `seed` (int64 [2]) so the same seed gives the same output whatever
thread or host runs it (the pipeline derives it from (seed, process, example
position), which makes training batches reproducible and resumable).

Images are decoded to RGB uint8: grey-level images are replicated to three
channels, an alpha channel is dropped (not composited), palette images are
expanded and 16-bit PNGs are scaled to 8 bits (`tf.io.decode_image`). Output
pixels are float32 in [-1, 1]: `(x - 127.5) / 127.5`.
"""

from __future__ import annotations

import tensorflow as tf


def decode_rgb(image_bytes: tf.Tensor) -> tf.Tensor:
  """Decodes JPEG/PNG/GIF/BMP bytes to uint8 [h, w, 3] (see module doc for conversions)."""
  image = tf.io.decode_image(image_bytes, channels=3, expand_animations=False)
  image.set_shape([None, None, 3])
  return image


def _to_uint8(image: tf.Tensor) -> tf.Tensor:
  return tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.uint8)


def resize(image: tf.Tensor, size: tuple[int, int] | tf.Tensor) -> tf.Tensor:
  """Bilinear resize of [h, w, 3] to uint8 [size[0], size[1], 3] (no antialiasing, as vit_jax)."""
  return _to_uint8(tf.image.resize(image, size, method='bilinear'))


def resize_small(image: tf.Tensor, smaller_size: int) -> tf.Tensor:
  """Shorter side -> smaller_size keeping the aspect ratio, by area averaging; uint8.

  big_vision's `resize_small` (the eval of its Mixer ImageNet config): each side becomes
  round(side * smaller_size / shorter side) in float32, `tf.image.resize(method='area')`
  (its default; TF's area resize has no antialias option), then clip and cast (truncation).
  """
  h, w = tf.unstack(tf.cast(tf.shape(image)[:2], tf.float32))
  factor = float(smaller_size) / tf.minimum(h, w)
  size = tf.cast(tf.round(tf.stack([h * factor, w * factor])), tf.int32)
  area = tf.image.resize(image, tf.maximum(size, smaller_size), method='area')
  return tf.cast(tf.clip_by_value(area, 0.0, 255.0), tf.uint8)


def _crop_window(shape: tf.Tensor, *, seed: tf.Tensor, area_min: float) -> tf.Tensor:
  """Inception-style random crop window [y, x, h, w] of an image of shape [h, w, c]."""
  begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
      shape,
      bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]),
      seed=seed,
      min_object_covered=0.0,
      aspect_ratio_range=(0.75, 1.33),  # big_vision inception_crop, TF's default (vit_jax)
      area_range=(area_min, 1.0),
      max_attempts=10,
      use_image_if_no_bounding_boxes=True)
  return tf.stack([begin[0], begin[1], size[0], size[1]])


def decode_and_inception_crop(image_bytes: tf.Tensor, *, seed: tf.Tensor,
                              area_min: float) -> tf.Tensor:
  """Random crop (area fraction area_min..1, aspect 0.75..1.33) of an encoded image.

  JPEGs are cropped while decoding (only the window is decoded); other formats
  are decoded fully and then cropped. Both paths pick the same window.

  Args:
    image_bytes: scalar string, an encoded image.
    seed: int64 [2], stateless seed.
    area_min: smallest crop area as a fraction of the image area.

  Returns:
    uint8 [h', w', 3].
  """

  def jpeg_path() -> tf.Tensor:
    shape = tf.io.extract_jpeg_shape(image_bytes)
    window = _crop_window(shape, seed=seed, area_min=area_min)
    return tf.image.decode_and_crop_jpeg(image_bytes, window, channels=3)

  def generic_path() -> tf.Tensor:
    image = decode_rgb(image_bytes)
    w = _crop_window(tf.shape(image), seed=seed, area_min=area_min)
    return tf.image.crop_to_bounding_box(image, w[0], w[1], w[2], w[3])

  image = tf.cond(tf.io.is_jpeg(image_bytes), jpeg_path, generic_path)
  image.set_shape([None, None, 3])
  return image


def train_image(image_bytes: tf.Tensor, *, seed: tf.Tensor, image_size: int, crop: str,
                area_min: float, flip: bool) -> tf.Tensor:
  """Crop ('inception' | 'resize'), resize to image_size and flip; uint8 [S, S, 3]."""
  crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
  if crop == 'inception':
    image = decode_and_inception_crop(image_bytes, seed=crop_seed, area_min=area_min)
  elif crop == 'resize':
    image = decode_rgb(image_bytes)
  else:
    raise ValueError(f"config.pp.crop={crop!r}: expected 'inception' or 'resize'.")
  image = resize(image, (image_size, image_size))
  if flip:
    image = tf.image.stateless_random_flip_left_right(image, seed=flip_seed)
  return image


def eval_image(image_bytes: tf.Tensor, *, image_size: int, mode: str,
               eval_resize: int) -> tf.Tensor:
  """Deterministic evaluation crop; uint8 [S, S, 3].

  Args:
    image_bytes: scalar string, an encoded image.
    image_size: output side S.
    mode: 'resize_small_crop' (shorter side -> eval_resize keeping the aspect
      ratio by area averaging, `resize_small`, then central S x S crop), 'resize_crop'
      (bilinear resize to eval_resize x eval_resize, central crop) or 'resize'
      (bilinear resize to S x S, vit_jax's fine-tuning eval).
    eval_resize: intermediate side for the crop modes (>= image_size).

  Returns:
    uint8 [S, S, 3].
  """
  image = decode_rgb(image_bytes)
  if mode == 'resize':
    return resize(image, (image_size, image_size))
  if mode == 'resize_small_crop':
    image = resize_small(image, eval_resize)  # big_vision's pre-training (and transfer) eval
  elif mode == 'resize_crop':
    image = resize(image, (eval_resize, eval_resize))
  else:
    raise ValueError(f"config.pp.eval_mode={mode!r}: expected 'resize_small_crop', "
                     "'resize_crop' or 'resize'.")
  top = (tf.shape(image)[0] - image_size) // 2
  left = (tf.shape(image)[1] - image_size) // 2
  return tf.image.crop_to_bounding_box(image, top, left, image_size, image_size)


def encode_labels(label: tf.Tensor, num_classes: int) -> tf.Tensor:
  """Host label encoding: class index () -> int32 (); a list of indices [k] -> uint8 multi-hot.

  One-hot encoding, mixup and label smoothing happen on the device (data.on_device).
  """
  label = tf.cast(label, tf.int32)
  if label.shape.rank == 0:
    return label
  if label.shape.rank == 1:  # An empty list gives all zeros.
    hot = tf.reduce_sum(tf.one_hot(label, num_classes, dtype=tf.int32), 0)
    return tf.cast(tf.minimum(hot, 1), tf.uint8)
  raise ValueError(f'Labels must be a class index or a list of them, got shape {label.shape}.')
