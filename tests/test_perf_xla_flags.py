"""perf/xla_flags.py: the project's default XLA flags, applied on `import mixer_flax`."""

import json
import os
import subprocess
import sys

import pytest

from mixer_flax.perf import xla_flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAG = '--xla_gpu_enable_triton_gemm=false'

# Imports the package in a fresh process, runs one computation on the default (CPU) backend,
# and prints XLA_FLAGS as the backend saw it.
_PROBE = """
import json, os, sys
if sys.argv[1] == 'backend_first':
  import jax.numpy as jnp; jnp.ones(2).block_until_ready()
import mixer_flax, jax, jax.numpy as jnp
print(json.dumps({'flags': os.environ.get('XLA_FLAGS'), 'sum': float(jnp.ones(3).sum()),
                  'backend': jax.default_backend()}))
"""


def _run(env_update, order='package_first'):
  env = {k: v for k, v in os.environ.items() if k not in ('XLA_FLAGS', xla_flags.SWITCH)}
  env.update(env_update, PYTHONPATH=ROOT, JAX_PLATFORMS='cpu')
  out = subprocess.run([sys.executable, '-c', _PROBE, order], env=env, check=True,
                       capture_output=True, text=True, timeout=120)
  return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize('env_update, order, expected', [
    ({}, 'package_first', FLAG),  # appended; the CPU backend accepts and ignores it
    ({'XLA_FLAGS': '--xla_cpu_enable_fast_math=false'}, 'package_first',
     f'--xla_cpu_enable_fast_math=false {FLAG}'),
    ({'XLA_FLAGS': '--xla_gpu_enable_triton_gemm=true'}, 'package_first',
     '--xla_gpu_enable_triton_gemm=true'),  # the user's value wins
    ({xla_flags.SWITCH: '0'}, 'package_first', None),  # switched off
    ({}, 'backend_first', None),  # too late: the backend already read XLA_FLAGS
], ids=['appended', 'appended_to_user_flags', 'user_value_wins', 'switch_off', 'backend_first'])
def test_import_sets_default_flags_in_a_fresh_process(env_update, order, expected):
  res = _run(env_update, order)
  assert res['flags'] == expected
  assert res['backend'] == 'cpu' and res['sum'] == 3.0


def test_apply_defaults_on_a_given_environment():
  env = {'XLA_FLAGS': '  --xla_gpu_enable_triton_gemm  '}  # bare boolean flag: set by the user
  assert xla_flags.apply_defaults(env) == [] and env['XLA_FLAGS'].strip() == (
      '--xla_gpu_enable_triton_gemm')
  env = {xla_flags.SWITCH: 'off'}
  assert xla_flags.apply_defaults(env) == [] and 'XLA_FLAGS' not in env
  env = {}
  assert xla_flags.apply_defaults(env) == [FLAG] and env['XLA_FLAGS'] == FLAG
