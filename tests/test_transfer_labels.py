"""VTAB-1k label maps and split rules on known inputs (expected values from the protocol)."""

import numpy as np
import pytest
import tensorflow as tf

from mixer_flax.transfer import labels, vtab


def _objects(**fields):
  return {k: tf.constant(v) for k, v in fields.items()}


def _png(pixels):
  return tf.io.encode_png(tf.constant(np.asarray(pixels, np.uint8)[..., None]))


@pytest.mark.parametrize('num_objects, label', [(3, 0), (4, 1), (10, 7)])
def test_clevr_count_is_objects_minus_three(num_objects, label):
  ex = {'image': tf.constant(b'img'), 'objects': _objects(size=[0] * num_objects)}
  out = labels.clevr_count(ex)
  assert int(out['label']) == label and out['image'].numpy() == b'img'


@pytest.mark.parametrize('depths, label', [
    ([12.0, 7.9, 30.0], 0),  # closest 7.9 <= 8
    ([8.0], 0),              # a bin edge belongs to the bin below it
    ([8.2, 9.9], 1),         # (8, 8.5]
    ([8.6], 2), ([9.2], 3), ([9.7], 4),
    ([10.5, 11.0], 5),       # > 10
])
def test_clevr_distance_bins_the_closest_object(depths, label):
  coords = [[1.0, 2.0, d] for d in depths]
  ex = {'image': tf.constant(b''), 'objects': _objects(pixel_coords=np.float32(coords))}
  assert int(labels.clevr_distance(ex)['label']) == label


@pytest.mark.parametrize('types, depths, label', [
    ([0, 5], [7.0, 3.0], 0),        # the Pedestrian (5) at 3 m is not a vehicle
    ([1, 2], [25.0, 15.0], 1),      # closest vehicle 15 m -> (8, 20]
    ([0], [20.0], 1),
    ([2, 0], [50.0, 21.0], 2),      # (20, 999]
    ([3, 4, 7], [5.0, 6.0, 9.0], 3),  # no Car/Van/Truck -> class 3
])
def test_kitti_distance_uses_the_closest_vehicle(types, depths, label):
  location = np.float32([[0.0, 1.0, d] for d in depths])
  ex = {'image': tf.constant(b''), 'objects': _objects(type=np.int64(types), location=location)}
  assert int(labels.kitti_distance(ex)['label']) == label


@pytest.mark.parametrize('fn, key, value, label', [
    (labels.dsprites_location, 'label_x_position', 0, 0),
    (labels.dsprites_location, 'label_x_position', 1, 0),
    (labels.dsprites_location, 'label_x_position', 2, 1),
    (labels.dsprites_location, 'label_x_position', 31, 15),
    (labels.dsprites_orientation, 'label_orientation', 2, 0),    # 2 / 2.5 < 1
    (labels.dsprites_orientation, 'label_orientation', 3, 1),
    (labels.dsprites_orientation, 'label_orientation', 5, 2),
    (labels.dsprites_orientation, 'label_orientation', 39, 15),
])
def test_dsprites_merges_values_into_16_classes_and_scales_pixels(fn, key, value, label):
  pixels = [[0, 1], [1, 0]]
  out = fn({'image': _png(pixels), key: tf.constant(value, tf.int64)})
  assert int(out['label']) == label and out['label'].dtype == tf.int64
  np.testing.assert_array_equal(tf.io.decode_png(out['image'])[..., 0], np.array(pixels) * 255)


def test_bin_index_counts_edges_below():
  edges = (0.0, 1.0, 2.0)
  assert [int(labels.bin_index(v, edges)) for v in (0.5, 1.0, 1.5, 7.0)] == [0, 0, 1, 2]


@pytest.mark.parametrize('rule, counts, expected', [
    # CIFAR-100: val200 starts at 90% of 50,000.
    (vtab.holdout(90), {'train': 50_000},
     ('train[:800]', 'train[45000:45200]', 'train[:800]+train[45000:45200]', 'test')),
    # Pets: 80% of 3,680 = 2,944.
    (vtab.holdout(80), {'train': 3_680},
     ('train[:800]', 'train[2944:3144]', 'train[:800]+train[2944:3144]', 'test')),
    (vtab.separate(), {'train': 1, 'validation': 1},
     ('train[:800]', 'validation[:200]', 'train[:800]+validation[:200]', 'test')),
    # EuroSAT: 60/20/20 of 27,000.
    (vtab.three_way(60, 20), {'train': 27_000},
     ('train[:800]', 'train[16200:16400]', 'train[:800]+train[16200:16400]', 'train[21600:]')),
    (vtab.smallnorb, {'train': 24_300, 'test': 24_300},
     ('train[:800]', 'test[:200]', 'train[:800]+test[:200]', 'test[50%:]')),
])
def test_split_rules(rule, counts, expected):
  s = rule(counts)
  assert (s.train, s.val, s.trainval, s.test) == expected


def test_task_table_has_the_19_vtab_tasks_in_three_groups():
  groups = [t.group for t in vtab.TASKS.values()]
  assert len(vtab.TASKS) == 19
  assert [groups.count(g) for g in vtab.GROUPS] == [7, 4, 8]
  # BiT-HyperRule: only the datasets with images below 96x96 px use the small resolution.
  low = sorted(t.name for t in vtab.TASKS.values() if t.low_res)
  assert low == ['cifar100', 'dsprites_location', 'dsprites_orientation', 'eurosat', 'svhn']
  assert vtab.image_size_for(vtab.TASKS['svhn']) == 224
  assert vtab.image_size_for(vtab.TASKS['dmlab']) == 448
