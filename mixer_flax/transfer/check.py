"""Which tfds datasets of a suite are prepared, and how to prepare the missing ones.

Nothing here downloads or prepares anything, and only tfds is imported (seconds, no
TensorFlow). Download sizes are read from tfds' own checksum files (`builder.url_infos`);
datasets built from archives you download yourself (diabetic_retinopathy_detection,
resisc45, imagenet2012) are reported as manual downloads with their instructions, and with
the archives' size where the checksum files do not list them (`MANUAL_ARCHIVES`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import tensorflow_datasets as tfds

# Manual downloads whose archives tfds' checksum files do not list (diabetic_retinopathy lists
# only 1.1 MiB of label files): approximate size in bytes and what to download. Sizes as the
# hosts publish them: Kaggle's diabetic-retinopathy-detection data (train.zip.00* 35 GB +
# test.zip.00*, 88 GB in all); NWPU-RESISC45 (31,500 256-px JPEGs, 0.4 GB).
MANUAL_ARCHIVES = {
    'diabetic_retinopathy_detection': (88 * 10**9, 'Kaggle diabetic-retinopathy-detection '
                                                   'train.zip.00* + test.zip.00*'),
    'resisc45': (4 * 10**8, 'NWPU-RESISC45.rar (OneDrive)'),
}


@dataclasses.dataclass(frozen=True)
class DatasetStatus:
  """Preparation state of one tfds dataset (name with its version pattern)."""

  name: str
  prepared: bool
  version: str | None  # of the prepared copy (None if not prepared)
  download_bytes: int  # from tfds' checksum files; 0 when tfds does not list the files
  manual: str  # tfds' manual-download instructions ('' when tfds downloads it)
  error: str = ''  # tfds does not know the name (or this version)

  @property
  def manual_bytes(self) -> int:
    """What you download yourself (0 when tfds downloads everything)."""
    if not self.manual:
      return 0
    base = self.name.split(':')[0].split('/')[0]
    return MANUAL_ARCHIVES.get(base, (self.download_bytes, ''))[0]

  def command(self, data_dir: str | None) -> str:
    """The shell command that prepares this dataset."""
    where = f' --data_dir={data_dir}' if data_dir else ''
    manual = ' --manual_dir=<dir with the downloaded archives>' if self.manual else ''
    return f'tfds build {self.name.split(":")[0]}{where}{manual}'


def dataset_status(name: str, data_dir: str | None) -> DatasetStatus:
  """Looks `name` up in `data_dir` (no preparation, no network)."""
  try:
    builder = tfds.builder(name, data_dir=data_dir)
  except Exception as e:  # noqa: BLE001  (unknown name or version: reported, not raised)
    return DatasetStatus(name, False, None, 0, '', error=f'{type(e).__name__}: {e}')
  infos = type(builder).url_infos or {}
  prepared = builder.is_prepared()
  return DatasetStatus(
      name=name, prepared=prepared, version=str(builder.version) if prepared else None,
      download_bytes=sum(int(i.size) for i in infos.values()),
      manual=(builder.MANUAL_DOWNLOAD_INSTRUCTIONS or '').strip())


def check_datasets(names: Iterable[str], data_dir: str | None) -> list[DatasetStatus]:
  """Status of each distinct dataset, in first-seen order."""
  return [dataset_status(n, data_dir) for n in dict.fromkeys(names)]


def _size(n: int) -> str:
  if n >= 2**30:
    return f'{n / 2**30:.2f} GiB'
  return f'{n / 2**20:.1f} MiB' if n >= 2**20 else 'size not listed by tfds'


def _about(n: int) -> str:
  """A published (rounded) size, in the host's decimal units."""
  return f'~{n / 10**9:.0f} GB' if n >= 10**9 else f'~{n / 10**6:.0f} MB'


def _manual_size(s: DatasetStatus) -> str:
  listed = s.name.split(':')[0].split('/')[0] not in MANUAL_ARCHIVES
  return _size(s.manual_bytes) if listed else _about(s.manual_bytes)


def _download(s: DatasetStatus) -> str:
  if not s.manual:
    return f'download {_size(s.download_bytes)}'
  return f'MANUAL download {_manual_size(s)}'


def status_report(statuses: list[DatasetStatus], data_dir: str | None) -> str:
  """Human-readable table: prepared / missing, download size (manual or not), how to prepare."""
  default = '(tfds default: $TFDS_DATA_DIR or ~/tensorflow_datasets)'
  lines = [f'tfds data_dir: {data_dir or default}']
  for s in statuses:
    state = f'prepared ({s.version})' if s.prepared else ('UNKNOWN' if s.error else 'missing')
    lines.append(f'  {s.name:52s} {state:18s} {_download(s)}')
  missing = [s for s in statuses if not s.prepared]
  tfds_total = sum(s.download_bytes for s in missing if not s.manual)
  manual_total = sum(s.manual_bytes for s in missing)
  lines.append(f'{len(statuses) - len(missing)} of {len(statuses)} prepared; missing: '
               f'{_size(tfds_total)} that tfds downloads'
               + (f' + about {_about(manual_total)[1:]} of archives you download yourself (MANUAL)'
                  if manual_total else '') + '.')
  return '\n'.join(lines)


def missing_message(statuses: list[DatasetStatus], data_dir: str | None) -> str | None:
  """One message naming every unprepared dataset and its command; None if all are ready."""
  missing = [s for s in statuses if not s.prepared]
  if not missing:
    return None
  lines = [f'{len(missing)} dataset(s) are not prepared in data_dir={data_dir or "(default)"}; '
           'nothing was trained. Prepare them (on a machine with internet) and rerun:']
  for s in missing:
    lines.append(f'  {s.name}: {s.error}' if s.error else f'  {s.command(data_dir)}')
    if s.manual:
      archive = MANUAL_ARCHIVES.get(s.name.split(':')[0].split('/')[0], (0, ''))[1]
      lines.append(f'      manual download first ({_manual_size(s)}'
                   + (f', {archive}' if archive else '') + '): ' + ' '.join(s.manual.split()))
  return '\n'.join(lines)
