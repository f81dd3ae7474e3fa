"""A real multi-host run: 2 processes x 2 CPU devices (gloo collectives on 127.0.0.1).

Both processes run the README command with `--coordinator_address/--num_processes/
--process_id`. They must agree exactly (same final params digest), and match a
single-process 4-device run fed the same global batches (process 0's shard on devices
0-1, process 1's on devices 2-3) within float tolerance: same train-loss trajectory,
same eval accuracy, same final params.
"""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from mixer_flax import checkpoint
from mixer_flax import config as config_lib
from mixer_flax.data import pipeline

pytestmark = pytest.mark.slow  # a quick tier without it: README "Tests"

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT = 400
STEPS = 12
OVERRIDES = [f'--config.total_steps={STEPS}', '--config.batch=32', '--config.batch_eval=360',
             '--config.warmup_steps=2', '--config.progress_every=4', '--config.evals.eval.every=12',
             '--config.checkpoint_every=8', '--config.tf_threads=1',
             '--config.shuffle_buffer=512',
             # SGD: float rounding differences between the runs stay at rounding level
             # (Adam would amplify them on near-zero gradients to lr-sized updates).
             '--config.optimizer=sgd', '--config.base_lr=0.05', '--config.weight_decay=0.0']

# Single-process reference: the same global batch as the 2-process run, assembled from the
# two simulated processes' shards of the input pipeline.
REFERENCE = r'''
import sys
import numpy as np
from absl import flags
from ml_collections import config_flags
from mixer_flax import train
from mixer_flax.data import pipeline

config_flag = config_flags.DEFINE_config_file('config', None, '')
flags.DEFINE_string('workdir', None, '')
flags.FLAGS(sys.argv)
original = pipeline.get_train_iterator

def two_process_batches(config, *, seed, start_step=0):
  config = config.copy_and_resolve_references()
  config.prefetch = 0
  shards = [original(config, seed=seed, start_step=start_step, process_index=p,
                     process_count=2, local_device_count=2) for p in (0, 1)]
  for parts in zip(*shards):
    yield {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

pipeline.get_train_iterator = two_process_batches
result = train.train_and_evaluate(config_flag.value, flags.FLAGS.workdir)
print('REFERENCE ' + __import__('json').dumps(result))
'''


def free_port():
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def env_with_devices(n):
  env = dict(os.environ)
  env['XLA_FLAGS'] = f'--xla_force_host_platform_device_count={n}'
  env['JAX_PLATFORMS'] = 'cpu'
  return env


def test_two_processes_agree_and_match_single_process(tmp_path, data_dir):
  config = ['--config=experiments/digits.py', *OVERRIDES, f'--config.data_dir={data_dir}']
  # Prepare the dataset here, so that the three processes below do not race to build it.
  digits = config_lib.load_experiment('experiments/digits.py')
  digits.data_dir = data_dir
  pipeline.get_dataset_info(digits)
  ref_dir, multi_dir = str(tmp_path / 'single'), str(tmp_path / 'multi')
  port = free_port()
  commands = [([sys.executable, '-c', REFERENCE, *config, f'--workdir={ref_dir}'], 4)]
  commands += [([sys.executable, '-m', 'mixer_flax.main', *config, f'--workdir={multi_dir}',
                 f'--coordinator_address=127.0.0.1:{port}', '--num_processes=2',
                 f'--process_id={i}'], 2) for i in range(2)]
  procs = [subprocess.Popen(cmd, cwd=ROOT, env=env_with_devices(n), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True) for cmd, n in commands]
  results = []
  try:
    for p in procs:
      results.append(p.communicate(timeout=TIMEOUT))
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
  for p, (_, err) in zip(procs, results):
    assert p.returncode == 0, err[-3000:]
  (ref_out, _), outs = results[0], results[1:]

  summaries = []
  for out, _ in outs:
    line = next(x for x in out.splitlines() if x.startswith('Process '))
    summaries.append(json.loads(line.split(' result: ', 1)[1]))
  assert [s['process_index'] for s in summaries] == [0, 1]
  assert summaries[0]['params_digest'] == summaries[1]['params_digest']
  assert summaries[0]['train_loss'] == summaries[1]['train_loss']
  assert 'Final eval accuracy' in outs[0][0] and 'Final eval accuracy' not in outs[1][0]

  reference = json.loads(next(x for x in ref_out.splitlines()
                              if x.startswith('REFERENCE '))[len('REFERENCE '):])
  assert summaries[0]['eval_count'] == reference['eval_count'] == 360
  assert summaries[0]['eval_accuracy'] == pytest.approx(reference['eval_accuracy'], abs=1e-9)

  def losses(workdir):
    with open(os.path.join(workdir, 'metrics.jsonl')) as f:
      return {r['step']: r['train_loss'] for r in map(json.loads, f)}

  multi_losses, ref_losses = losses(multi_dir), losses(ref_dir)
  assert sorted(multi_losses) == sorted(ref_losses) == [4, 8, 12]
  for step, loss in ref_losses.items():
    assert multi_losses[step] == pytest.approx(loss, rel=1e-4), step
  a = checkpoint.load_npz(os.path.join(multi_dir, 'final.npz'))
  b = checkpoint.load_npz(os.path.join(ref_dir, 'final.npz'))
  flat_a, flat_b = _flat(a), _flat(b)
  assert flat_a.keys() == flat_b.keys()
  for k in flat_a:
    np.testing.assert_allclose(flat_a[k], flat_b[k], rtol=1e-4, atol=1e-5, err_msg=k)
  # Only process 0 wrote files; the checkpoints are shared and complete.
  assert sorted(os.listdir(os.path.join(multi_dir, 'checkpoints'))) == ['12', '8']


def _flat(tree, prefix=''):
  out = {}
  for k, v in tree.items():
    if isinstance(v, dict):
      out.update(_flat(v, f'{prefix}{k}/'))
    else:
      out[prefix + k] = np.asarray(v)
  return out
