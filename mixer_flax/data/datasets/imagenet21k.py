"""`imagenet21k`: ImageNet-21k (fall 2011 release) prepared from the archive you download.

tensorflow_datasets has no ImageNet-21k builder; this one follows big_vision's
naming (dataset 'imagenet21k', one split 'full'), so the experiment configs of
this repository work unchanged. One split 'full' holds every image; hold-out
sets are slices of it (tfds shuffles examples when preparing, so
'full[:51200]' is a random sample).

Labels: index of the class's WordNet id (e.g. n01440764) in the sorted list of
the classes found in the archive; `ClassLabel(num_classes=21843)`, the class
count of the released ImageNet-21k checkpoints.

Preparation reads the archive once, on one process, and copies every JPEG
unchanged into TFRecords (~1.3 TB, many hours; run it once, e.g. with
`python -c "from mixer_flax.data import pipeline; pipeline.get_dataset_info(cfg)"` or a first
training run, before starting a multi-host job).
"""

from __future__ import annotations

import os
import tarfile
from collections.abc import Iterator
from typing import Any

import tensorflow_datasets as tfds

NUM_CLASSES = 21843
ARCHIVES = ('fall11_whole.tar', 'winter21_whole.tar.gz', 'winter21_whole.tar')

_INSTRUCTIONS = f"""\
Register at https://image-net.org/download-images and download the ImageNet-21k
archive fall11_whole.tar (the fall 2011 release: ~14.2 M images, 1.3 TB;
winter21_whole.tar.gz also works but has fewer classes). Put it in manual_dir,
either as the archive itself (one of {', '.join(ARCHIVES)}) or as the per-class
files n########.tar it contains.
"""


def _class_tars(manual_dir: str) -> tuple[str | None, list[str]]:
  """(outer archive or None, sorted per-class tar names n*.tar)."""
  for name in ARCHIVES:
    path = os.path.join(manual_dir, name)
    if os.path.exists(path):
      with tarfile.open(path) as outer:  # Lists headers only for an uncompressed tar.
        names = [m.name for m in outer if m.isfile() and m.name.endswith('.tar')]
      return path, sorted(names, key=os.path.basename)
  names = sorted(f for f in os.listdir(manual_dir) if f.startswith('n') and f.endswith('.tar'))
  if not names:
    raise FileNotFoundError(f'No ImageNet-21k data in manual_dir={manual_dir}.\n{_INSTRUCTIONS}')
  return None, names


def _wnid(tar_name: str) -> str:
  return os.path.basename(tar_name)[:-len('.tar')]


class Imagenet21k(tfds.core.GeneratorBasedBuilder):
  """ImageNet-21k (fall 2011), one split 'full', prepared from a manual download."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Labels: sorted WordNet ids; split "full".'}
  MANUAL_DOWNLOAD_INSTRUCTIONS = _INSTRUCTIONS

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        description=__doc__,
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Image(encoding_format='jpeg'),
            'label': tfds.features.ClassLabel(num_classes=NUM_CLASSES),
            'file_name': tfds.features.Text(),
        }),
        supervised_keys=('image', 'label'),
        homepage='https://image-net.org/',
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict[str, Any]:
    return {'full': self._generate_examples(os.fspath(dl_manager.manual_dir))}

  def _generate_examples(self, manual_dir: str) -> Iterator[tuple[str, dict[str, Any]]]:
    archive, names = _class_tars(manual_dir)
    if len(names) > NUM_CLASSES:
      raise ValueError(f'{len(names)} classes in {manual_dir}, more than {NUM_CLASSES}.')
    labels = {_wnid(n): i for i, n in enumerate(names)}

    def examples(wnid: str, fileobj) -> Iterator[tuple[str, dict[str, Any]]]:
      with tarfile.open(fileobj=fileobj, mode='r|*') as inner:
        for member in inner:
          if member.isfile():
            data = inner.extractfile(member).read()
            key = f'{wnid}/{os.path.basename(member.name)}'
            yield key, {'image': data, 'label': labels[wnid], 'file_name': key}

    if archive is None:
      for name in names:
        with open(os.path.join(manual_dir, name), 'rb') as f:
          yield from examples(_wnid(name), f)
      return
    with tarfile.open(archive, mode='r|*') as outer:  # Streams: one pass over 1.3 TB.
      for member in outer:
        if member.isfile() and member.name.endswith('.tar'):
          yield from examples(_wnid(member.name), outer.extractfile(member))
