"""The host a benchmark runs on: environment description and allocator settings."""

from __future__ import annotations

import os
import platform
import sys
import time
from typing import Any

import jax

TCMALLOC_PATHS = ('/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4',
                  '/usr/lib/x86_64-linux-gnu/libtcmalloc.so.4',
                  '/usr/lib64/libtcmalloc_minimal.so.4', '/usr/lib/libtcmalloc_minimal.so.4')


# glibc malloc settings of `--allocator glibc` (also usable from the shell for the trainer).
GLIBC_KEEP_ENV = (('MALLOC_ARENA_MAX', '1'), ('MALLOC_MMAP_MAX_', '0'),
                  ('MALLOC_TRIM_THRESHOLD_', str(2 ** 31 - 1)))


def allocator_env(name: str) -> dict[str, str]:
  """Environment variables that select host allocator `name` for a new process.

  'glibc' keeps freed memory in glibc's main heap (one arena, no mmap for big
  blocks, no trimming below 2 GiB); 'tcmalloc' preloads gperftools' tcmalloc
  (`apt-get install libtcmalloc-minimal4`); 'hugepages' asks glibc (>= 2.35) for
  transparent huge pages; 'default' changes nothing. All three keep XLA's large
  per-call scratch buffers from being page-faulted anew on every call (see
  docs/performance.md).
  """
  if name == 'default':
    return {}
  if name == 'glibc':
    return dict(GLIBC_KEEP_ENV)
  if name == 'hugepages':
    return {'GLIBC_TUNABLES': 'glibc.malloc.hugetlb=1'}
  if name == 'tcmalloc':
    found = [p for p in TCMALLOC_PATHS if os.path.exists(p)]
    if not found:
      raise SystemExit('--allocator tcmalloc: no libtcmalloc found (looked in '
                       f'{", ".join(TCMALLOC_PATHS)}); install it with '
                       '`apt-get install libtcmalloc-minimal4` or use --allocator hugepages.')
    return {'LD_PRELOAD': found[0]}
  raise SystemExit(f'--allocator {name!r}: use default, glibc, tcmalloc or hugepages.')


def reexec_with_allocator(name: str) -> None:
  """Restarts this process with `allocator_env(name)` unless it is already in effect."""
  env = allocator_env(name)
  if all(os.environ.get(k, '') == v for k, v in env.items()):
    return
  os.environ.update(env)
  os.execv(sys.executable, [sys.executable] + sys.argv)


def environment() -> dict[str, Any]:
  """Backend, device and software versions of this run."""
  dev = jax.devices()[0]
  return {'backend': jax.default_backend(), 'device': dev.device_kind,
          'device_count': jax.device_count(), 'cpu_count': os.cpu_count(),
          'jax': jax.__version__, 'python': platform.python_version(),
          'xla_flags': os.environ.get('XLA_FLAGS', ''),
          'ld_preload': os.environ.get('LD_PRELOAD', ''),
          'glibc_tunables': os.environ.get('GLIBC_TUNABLES', ''),
          'malloc_env': {k: os.environ[k] for k, _ in GLIBC_KEEP_ENV if k in os.environ},
          'time_utc': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}
