"""perf/ (benchmark, FLOP counter) and scripts/gpu_bench.sh: FLOP accounting, harness smoke runs."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mixer_flax import backends, models
from mixer_flax.perf import benchmark, bound, cli, flops
from mixer_flax.perf import report as report_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_analytic_flops_b16():
  fl = flops.analytic_flops(variant='Mixer-B_16', image_size=224, num_classes=1000)
  # 25.2 GFLOP per 224 px image (issue 6); by hand: stem 2*196*768*768, per block
  # 4*768*196*384 (token) + 4*196*768*3072 (channel), head 2*768*1000.
  assert fl['stem'] == 2 * 196 * 768 * 768
  assert fl['token_mixing'] == 12 * 4 * 768 * 196 * 384
  assert fl['channel_mixing'] == 12 * 4 * 196 * 768 * 3072
  assert fl['head'] == 2 * 768 * 1000
  assert fl['total'] == pytest.approx(25.2e9, rel=2e-3)


def test_token_mixing_scaling_with_resolution():
  # Doubling the side multiplies S by 4. At a fixed D_S every part grows x4; with the
  # paper's high-resolution fine-tuning (D_S' = K^2 D_S, K = 2) token mixing grows as S^2.
  f1 = flops.analytic_flops(variant='Mixer-B_16', image_size=224, num_classes=0)
  f2 = flops.analytic_flops(variant='Mixer-B_16', image_size=448, num_classes=0)
  f2k = flops.analytic_flops(variant='Mixer-B_16', image_size=448, num_classes=0,
                             tokens_mlp_dim=4 * 384)
  assert f2['token_mixing'] == 4 * f1['token_mixing']
  assert f2k['token_mixing'] == 16 * f1['token_mixing']
  assert f2['channel_mixing'] == 4 * f1['channel_mixing'] == f2k['channel_mixing']
  assert f2['stem'] == 4 * f1['stem']


def test_analytic_flops_match_xla_cost_analysis():
  # XLA also counts element-wise work (LayerNorm, GELU, adds): a little above the matmuls.
  model = models.create_model('Mixer-B_16', num_classes=1000)
  x = jax.ShapeDtypeStruct((2, 224, 224, 3), jnp.float32)
  params = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 224, 224, 3))))
  lowered = jax.jit(model.apply).lower(params, x)
  xla = flops.cost_flops(lowered) / 2
  analytic = flops.analytic_flops(variant='Mixer-B_16', image_size=224,
                                  num_classes=1000)['total']
  assert analytic <= xla <= 1.03 * analytic


@pytest.mark.slow
def test_harness_smoke(tmp_path):
  # Ours, the matmul-only bound and the timm peer (a subprocess; uncompiled here) in one run.
  out = tmp_path / 'bench.json'
  report = benchmark.run(['--variant', 'Mixer-Ti_16', '--image_size', '32', '--batch', '2',
                          '--repeats', '2', '--min_time', '0.01', '--matmul_size', '128',
                          '--num_classes', '10', '--bound', '--compare_timm',
                          '--timm_compile', '0', '--json', str(out)])
  saved = json.loads(out.read_text())
  assert saved['variant'] == 'Mixer-Ti_16' and saved['matmul']['size'] == 128
  assert saved['matmul']['median_gflop_per_s'] > 0
  assert [row['batch'] for row in saved['results']] == [2]
  fl = flops.analytic_flops(variant='Mixer-Ti_16', image_size=32, num_classes=10)
  for row in report['results']:
    assert row['analytic_gflop_per_image'] == pytest.approx(fl['total'] / 1e9)
    for mode, mult in (('forward', 1), ('train', 3)):
      r = row[mode]
      assert len(r['img_per_s_runs']) == 2 and r['img_per_s'] > 0
      assert r['compile_s'] > 0 and r['fraction_of_peak'] > 0
      # Fraction = analytic FLOP rate / peak of the same run.
      frac0 = mult * fl['total'] * r['img_per_s_runs'][0] / r['peak_flops_runs'][0]
      assert r['fraction_of_peak_runs'][0] == pytest.approx(frac0)
      # XLA's count: matmuls plus element-wise work (a tiny model has relatively more).
      assert mult * fl['total'] <= 1e9 * r['xla_gflop_per_image'] < 1.5 * mult * fl['total']
      assert any(k.endswith('_mib') for k in r['memory'])
    jax_peak = saved['matmul']['median_gflop_per_s'] * 1e9
    for mode, mult in (('forward_bound', 1), ('grad_bound', 3), ('forward_timm', 1),
                       ('train_timm', 3)):
      r = row[mode]
      assert len(r['img_per_s_runs']) == 2 and r['img_per_s'] > 0
      if mode.endswith('_timm'):  # against the JAX peak of this run
        assert r['fraction_of_peak'] == pytest.approx(
            mult * fl['total'] * r['img_per_s'] / jax_peak)
        assert r['fraction_of_torch_peak'] > 0
      else:
        frac0 = mult * fl['total'] * r['img_per_s_runs'][0] / r['peak_flops_runs'][0]
        assert r['fraction_of_peak_runs'][0] == pytest.approx(frac0)
  # The peer is the same network: timm's parameter count equals ours.
  ours = models.create_model('Mixer-Ti_16', num_classes=10)
  shapes = jax.eval_shape(lambda: ours.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3))))
  assert saved['timm']['num_params'] == models.num_params(shapes) and not saved['timm'].get(
      'error')
  assert saved['formulation'] == 'nsc' and saved['inference_chunked']  # the CPU's defaults


@pytest.mark.parametrize('formulation', ['nsc', 'snc', 'snc_md'])
def test_bound_is_the_models_matmul_chain(formulation):
  # numpy oracle: the same matmuls, no LayerNorm / GELU / bias / residual.
  model = models.create_model('Mixer-Ti_16', num_classes=10)
  images = jax.random.uniform(jax.random.key(1), (3, 32, 32, 3), minval=-1, maxval=1)
  params = model.init(jax.random.key(0), images)['params']
  params = jax.tree_util.tree_map(lambda v: v + 0.1, params)
  chain = bound.matmul_chain(patch_size=16, formulation=formulation, dtype=jnp.float32)
  p = jax.tree_util.tree_map(lambda v: np.asarray(v, np.float64), params)
  x = np.asarray(images, np.float64).reshape(3, 2, 16, 2, 16, 3).transpose(0, 1, 3, 2, 4, 5)
  x = x.reshape(3, 4, -1) @ p['stem']['kernel'].reshape(-1, 192)
  for i in range(4):
    tok, ch = p[f'MixerBlock_{i}']['token_mixing'], p[f'MixerBlock_{i}']['channel_mixing']
    x = np.swapaxes(np.swapaxes(x, 1, 2) @ tok['Dense_0']['kernel'] @ tok['Dense_1']['kernel'],
                    1, 2)
    x = x @ ch['Dense_0']['kernel'] @ ch['Dense_1']['kernel']
  expected = x.mean(1) @ p['head']['kernel']
  got = np.asarray(jax.jit(chain)(params, images), np.float64)
  assert np.linalg.norm(got - expected) <= 1e-5 * np.linalg.norm(expected)


@pytest.mark.slow
def test_train_augment_mode_times_the_device_augmentation():
  report = benchmark.run(['--variant', 'Mixer-Ti_16', '--image_size', '32', '--batch', '2',
                          '--repeats', '1', '--min_time', '0.01', '--matmul_size', '128',
                          '--num_classes', '10', '--modes', 'train,train_augment',
                          '--randaug_mode', 'compact', '--randaug_histogram', 'onehot_int8'])
  (row,) = report['results']
  aug = row['train_augment']
  assert report['randaug'] == ['compact', 'onehot_int8']
  assert backends.current().randaug_mode == 'switch'  # the table is restored afterwards
  assert aug['img_per_s'] > 0 and aug['augment_only_ms'] > 0 and 0 < aug['augment_share']
  assert 'augment_cost' in row and 'forward' not in row


@pytest.mark.slow
def test_train_sam_mode_counts_two_passes(capsys):
  old = jax.config.values['jax_disable_most_optimizations']
  jax.config.update('jax_disable_most_optimizations', True)  # FLOP accounting only: compile fast
  try:
    report = benchmark.run(['--variant', 'Mixer-Ti_16', '--image_size', '32', '--batch', '2',
                            '--repeats', '1', '--min_time', '0.01', '--matmul_size', '128',
                            '--num_classes', '10', '--modes', 'train_sam'])
  finally:
    jax.config.update('jax_disable_most_optimizations', old)
  (row,) = report['results']
  fl = flops.analytic_flops(variant='Mixer-Ti_16', image_size=32, num_classes=10)['total']
  r = row['train_sam']  # 2 x (forward + backward) = 6 x forward
  assert r['fraction_of_peak_runs'][0] == pytest.approx(
      6 * fl * r['img_per_s_runs'][0] / r['peak_flops_runs'][0])
  assert 6 * fl <= 1e9 * r['xla_gflop_per_image'] < 1.5 * 6 * fl
  # The printed cost: wall-time ratio, and the ratio in units of each run's peak.
  timing = dict(cpu_time_fraction_of_peak=None, compile_s=1.0, memory={})
  report['results'] = [dict(batch=2, analytic_gflop_per_image=1.0,
                            train=dict(img_per_s=10.0, fraction_of_peak=0.9, **timing),
                            train_sam=dict(img_per_s=4.0, fraction_of_peak=0.8, **timing))]
  capsys.readouterr()
  report_lib.print_table(report)
  assert ('SAM step (training/sam.py, two forward/backward passes): 2.50 x the time of the '
          "train step at batch 2 (2.25 x in units of each run's matmul peak)"
          ) in capsys.readouterr().out


@pytest.mark.slow
def test_formulations_reach_the_model_and_the_report(capsys):
  report = benchmark.run(['--variant', 'Mixer-Ti_16', '--image_size', '32', '--batch', '2',
                          '--repeats', '1', '--min_time', '0.01', '--matmul_size', '128',
                          '--num_classes', '10', '--modes', 'forward,train', '--formulation',
                          'snc', '--also', 'formulation=snc_md_gelu_remat,remat=1'])
  assert report['formulation'] == 'snc' and not report['inference_chunked']
  (row,) = report['results']
  (alt,) = row['also']  # timed in the same process, after the baseline
  assert alt['overrides'] == {'formulation': 'snc_md_gelu_remat', 'remat': True}
  for mode in ('forward', 'train'):
    assert alt[mode]['vs_baseline'] == pytest.approx(
        alt[mode]['img_per_s'] / row[mode]['img_per_s'])
    assert alt[mode]['vs_baseline_of_peak'] == pytest.approx(
        alt[mode]['fraction_of_peak'] / row[mode]['fraction_of_peak'])
  assert "also1 = {'formulation': 'snc_md_gelu_remat', 'remat': True}" in capsys.readouterr().out
  assert benchmark._model_overrides(cli.parse_args(['--formulation', 'snc_md', '--remat'])) == {
      'dtype': 'float32', 'formulation': 'snc_md', 'remat': True}
  for bad in ('token_hidden=md', 'formulation=snc_dm'):
    with pytest.raises(SystemExit):
      cli.parse_args(['--also', bad])


def test_bad_variant_is_rejected():
  with pytest.raises(SystemExit):
    benchmark.run(['--variant', 'Mixer-Q_7'])


@pytest.mark.slow
def test_gpu_script_dry_run_on_cpu(tmp_path):
  # The default stages (what the next GPU session runs) with the timm peer, at tiny sizes.
  env = dict(os.environ, OUT=str(tmp_path), DRY_RUN='1', PEER='1', PYTHON=sys.executable)
  env.pop('STAGES', None)
  subprocess.run(['bash', os.path.join(ROOT, 'scripts', 'gpu_bench.sh')], env=env, check=True,
                 capture_output=True, timeout=1200)
  for name, modes in (('fwd', {'forward', 'forward_bound', 'forward_timm', 'also'}),
                      ('train', {'train', 'grad_bound', 'train_timm', 'also', 'train_augment',
                                 'augment_cost'}),
                      ('augment_Mixer-Ti_16', {'train_augment'})):
    report = json.loads((tmp_path / f'{name}.json').read_text())
    assert report['dtype'] == 'bfloat16' and report['variant'] == 'Mixer-Ti_16'
    (row,) = report['results']
    assert set(row) - {'batch', 'analytic_gflop_per_image'} == modes
    assert all(row[m]['img_per_s'] > 0 for m in modes - {'also', 'augment_cost'})
  fwd, train = (json.loads((tmp_path / f'{n}.json').read_text())['results'][0]
                for n in ('fwd', 'train'))
  assert fwd['also'][0]['overrides'] == {'formulation': 'snc_md'}
  assert train['also'][0]['overrides'] == {'formulation': 'snc_md_gelu_remat'}
  loop = json.loads((tmp_path / 'loop.json').read_text())
  assert loop['variant'] == 'Mixer-Ti_16' and loop['pp']['randaug_layers'] == 2
  assert loop['ratio'] == pytest.approx(loop['loop_img_per_s'] / loop['bare_img_per_s'])
  host = json.loads((tmp_path / 'host.json').read_text())
  assert host['images'] == 60 and host['pil_decode_cpu_s_per_image'] > 0
  assert (tmp_path / 'log.txt').read_text().count('exit 0') == 5


@pytest.mark.slow
def test_end_to_end_smoke(tmp_path, data_dir):
  out = tmp_path / 'e2e.json'
  report = benchmark.run(['--end_to_end', '--steps', '20', '--data_dir', data_dir,
                          '--json', str(out)])
  e = json.loads(out.read_text())['end_to_end']
  assert e['model_name'] == 'Mixer-Ti_4' and e['steps'] == 20
  # Trainer: 4 logging intervals, the first excluded; bare step: 2 before and 2 after it.
  assert len(e['trainer_img_per_s_runs']) == 3 and len(e['bare_img_per_s_runs']) == 2
  assert e['bare_before_img_per_s'] > 0 and e['bare_after_img_per_s'] > 0
  assert e['trainer_img_per_s'] > 0 and e['bare_img_per_s'] > 0
  assert e['ratio'] == pytest.approx(e['trainer_img_per_s'] / e['bare_img_per_s'])
  assert report['variant'] == 'Mixer-Ti_4' and report['image_size'] == 16
