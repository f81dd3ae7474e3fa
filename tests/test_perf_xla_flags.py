"""backends.apply_xla_flags: the default XLA flags, set by the entry points before JAX starts."""

import json
import os
import subprocess
import sys

import pytest

from mixer_flax import backends

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAG = '--xla_gpu_enable_triton_gemm=false'

# In a fresh process: imports the package (which must leave XLA_FLAGS alone), applies the
# defaults as the entry points do, runs one computation on the CPU backend and prints
# XLA_FLAGS as the backend saw it.
_PROBE = """
import json, os, sys
if sys.argv[1] == 'backend_first':
  import jax.numpy as jnp; jnp.ones(2).block_until_ready()
import mixer_flax
untouched = os.environ.get('XLA_FLAGS')
from mixer_flax import backends
backends.apply_xla_flags()
import jax, jax.numpy as jnp
print(json.dumps({'flags': os.environ.get('XLA_FLAGS'), 'sum': float(jnp.ones(3).sum()),
                  'backend': jax.default_backend(), 'import_untouched': untouched}))
"""


def _run(env_update, order='defaults_first'):
  env = {k: v for k, v in os.environ.items() if k not in ('XLA_FLAGS', backends.SWITCH)}
  env.update(env_update, PYTHONPATH=ROOT, JAX_PLATFORMS='cpu')
  out = subprocess.run([sys.executable, '-c', _PROBE, order], env=env, check=True,
                       capture_output=True, text=True, timeout=120)
  return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize('env_update, order, expected', [
    ({}, 'defaults_first', FLAG),  # appended; the CPU backend accepts and ignores it
    ({'XLA_FLAGS': '--xla_cpu_enable_fast_math=false'}, 'defaults_first',
     f'--xla_cpu_enable_fast_math=false {FLAG}'),
    ({'XLA_FLAGS': '--xla_gpu_enable_triton_gemm=true'}, 'defaults_first',
     '--xla_gpu_enable_triton_gemm=true'),  # the user's value wins
    ({backends.SWITCH: '0'}, 'defaults_first', None),  # switched off
    ({}, 'backend_first', None),  # too late: the backend already read XLA_FLAGS
], ids=['appended', 'appended_to_user_flags', 'user_value_wins', 'switch_off', 'backend_first'])
def test_defaults_in_a_fresh_process(env_update, order, expected):
  res = _run(env_update, order)
  assert res['flags'] == expected
  assert res['import_untouched'] == env_update.get('XLA_FLAGS')  # `import mixer_flax`: nothing
  assert res['backend'] == 'cpu' and res['sum'] == 3.0


def test_apply_xla_flags_on_a_given_environment():
  env = {'XLA_FLAGS': '  --xla_gpu_enable_triton_gemm  '}  # bare boolean flag: set by the user
  assert backends.apply_xla_flags(env) == [] and env['XLA_FLAGS'].strip() == (
      '--xla_gpu_enable_triton_gemm')
  env = {backends.SWITCH: 'off'}
  assert backends.apply_xla_flags(env) == [] and 'XLA_FLAGS' not in env
  env = {}
  assert backends.apply_xla_flags(env) == [FLAG] and env['XLA_FLAGS'] == FLAG


def test_entry_modules_import_without_starting_a_backend():
  # The entry points apply the flags after importing these modules and before running them,
  # so importing them must not create a JAX backend (XLA reads XLA_FLAGS when it does).
  modules = ['mixer_flax.main', 'mixer_flax.transfer.__main__', 'mixer_flax.perf.benchmark',
             'mixer_flax.perf.gpu_hlo', 'mixer_flax.perf.input_rate', 'mixer_flax.perf.loop',
             'mixer_flax.perf.decode_rate', 'mixer_flax.eval.cli',
             'mixer_flax.checkpoint.cli', 'mixer_flax.paper.reproduce', 'mixer_flax.train']
  code = ('import importlib, sys\n'
          f'for m in {modules!r}: importlib.import_module(m)\n'
          "bridge = sys.modules.get('jax._src.xla_bridge')\n"
          "print(bool(getattr(bridge, '_backends', None)))\n")
  env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS='cpu')
  out = subprocess.run([sys.executable, '-c', code], env=env, check=True, capture_output=True,
                       text=True, timeout=300)
  assert out.stdout.strip().splitlines()[-1] == 'False'
