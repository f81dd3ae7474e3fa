"""Which tfds datasets of a suite are prepared, and how to prepare the missing ones.

Nothing here downloads or prepares anything. Download sizes are read from tfds' own
checksum files (`builder.url_infos`); datasets built from archives you download yourself
(diabetic_retinopathy_detection, resisc45, imagenet2012) list their instructions instead.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import tensorflow_datasets as tfds


@dataclasses.dataclass(frozen=True)
class DatasetStatus:
  """Preparation state of one tfds dataset (name with its version pattern)."""

  name: str
  prepared: bool
  version: str | None  # of the prepared copy (None if not prepared)
  download_bytes: int  # from tfds' checksum files; 0 when tfds does not list the files
  manual: str  # tfds' manual-download instructions ('' when tfds downloads it)
  error: str = ''  # tfds does not know the name (or this version)

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


def status_report(statuses: list[DatasetStatus], data_dir: str | None) -> str:
  """Human-readable table: prepared / missing, download size, how to prepare."""
  default = '(tfds default: $TFDS_DATA_DIR or ~/tensorflow_datasets)'
  lines = [f'tfds data_dir: {data_dir or default}']
  for s in statuses:
    state = f'prepared ({s.version})' if s.prepared else ('UNKNOWN' if s.error else 'missing')
    lines.append(f'  {s.name:52s} {state:18s} download {_size(s.download_bytes)}'
                 + ('  [manual download]' if s.manual else ''))
  missing = [s for s in statuses if not s.prepared]
  total = sum(s.download_bytes for s in missing)
  lines.append(f'{len(statuses) - len(missing)} of {len(statuses)} prepared; missing downloads '
               f'total {_size(total)} (tfds checksum files; unlisted archives not counted).')
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
      lines.append('      manual download first: ' + ' '.join(s.manual.split()))
  return '\n'.join(lines)
