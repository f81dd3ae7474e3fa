"""Issue-14 probe, one process per XLA_FLAGS setting (set by the caller).

Forward of Mixer-B/16 bf16 at --fwd_batch: the model (mixer_flax, default layout), a
functional copy with explicit 2-D channel GEMMs ('fn2d'), the same with the channel MLP
from Pallas kernels ('pallas', if mixer_flax.models.fused_mlp exists); HLO statistics of
the compiled forward (and gradient); then the trainer's train step via benchmark.run.
Each result is appended to $OUT/rows.jsonl as soon as it exists.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import sys
import time
import traceback

import jax
import jax.numpy as jnp

from mixer_flax import models
from mixer_flax.models import layout as layout_lib
from mixer_flax.perf import benchmark as bench_lib
from mixer_flax.perf import bound as bound_lib
from mixer_flax.perf.flops import analytic_flops
from mixer_flax.perf.timing import MatmulPeak, measure

BF16 = jnp.bfloat16
OUT = os.environ.get('OUT', '/tmp/out')
T0 = time.time()


def emit(row: dict) -> None:
  row = dict(row, tag=os.environ.get('TAG', ''), xla_flags=os.environ.get('XLA_FLAGS', ''),
             t=round(time.time() - T0, 1))
  with open(os.path.join(OUT, 'rows.jsonl'), 'a') as f:
    f.write(json.dumps(row, default=float) + '\n')
  short = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()
           if k not in ('hlo', 'runs')}
  print(json.dumps(short, default=float), flush=True)


_SHAPE = re.compile(r'(bf16|f32|f16|s32|u8|s8|u32|pred)\[([\d,]*)\]')
_BYTES = {'bf16': 2, 'f16': 2, 'f32': 4, 's32': 4, 'u32': 4, 'u8': 1, 's8': 1, 'pred': 1}


def hlo_stats(compiled) -> dict:
  """Counts of kernels in the entry computation and bytes written by non-GEMM fusions."""
  text = compiled.as_text()
  entry = text[text.rfind('\nENTRY'):]
  c = collections.Counter()
  written = 0
  for line in entry.splitlines():
    line = line.strip()
    if '=' not in line:
      continue
    rhs = line.split('=', 1)[1]
    m = re.search(r'custom_call_target="([^"]+)"', line)
    if m:
      c['custom_call:' + m.group(1)] += 1
    if re.search(r'"beta":1[,}]', line):
      c['gemm_beta_1'] += 1
    m = re.search(r'"epilogue":"([A-Z_]+)"', line)
    if m:
      c['epilogue:' + m.group(1)] += 1
    if ' fusion(' in rhs:
      kind = re.search(r'kind=(k\w+)', line)
      backend = re.search(r'"kind":"(__[^"]+)"', line)
      name = backend.group(1) if backend else (kind.group(1) if kind else '?')
      c['fusion:' + name] += 1
      if not backend:  # an element-wise / reduction fusion: what it writes
        head = rhs.split(' fusion(')[0]
        for dt, dims in _SHAPE.findall(head):
          n = 1
          for d in filter(None, dims.split(',')):
            n *= int(d)
          written += n * _BYTES[dt]
  c['nongemm_fusion_written_GB'] = round(written / 1e9, 3)
  return dict(c)


def layer_norm(x, p, dtype=BF16):
  """flax nn.LayerNorm(epsilon=1e-6, dtype=bf16): f32 statistics, output in dtype."""
  xf = x.astype(jnp.float32)
  mean = xf.mean(-1, keepdims=True)
  var = jnp.square(xf - mean).mean(-1, keepdims=True)
  y = (xf - mean) * jax.lax.rsqrt(var + 1e-6) * p['scale'] + p['bias']
  return y.astype(dtype)


def channel_xla(y, x, p):
  c = y.shape[-1]
  y2 = y.reshape(-1, c)
  h = jax.nn.gelu(y2 @ p['Dense_0']['kernel'].astype(BF16) + p['Dense_0']['bias'].astype(BF16),
                  approximate=True)
  out = x.reshape(-1, c) + (h @ p['Dense_1']['kernel'].astype(BF16)
                            + p['Dense_1']['bias'].astype(BF16))
  return out.reshape(x.shape)


def channel_beta(y, x, p):
  """As channel_xla, the residual and bias added as one addend (cuBLAS beta = 1 fusion)."""
  c = y.shape[-1]
  y2 = y.reshape(-1, c)
  h = jax.nn.gelu(y2 @ p['Dense_0']['kernel'].astype(BF16) + p['Dense_0']['bias'].astype(BF16),
                  approximate=True)
  addend = x.reshape(-1, c) + p['Dense_1']['bias'].astype(BF16)
  return (h @ p['Dense_1']['kernel'].astype(BF16) + addend).reshape(x.shape)


def make_channel_pallas(cfg: dict):
  from mixer_flax.models import fused_mlp  # the helper's kernels (issue 14)

  def channel(y, x, p):
    c = y.shape[-1]
    k0 = p['Dense_0']['kernel'].astype(BF16)
    k1 = p['Dense_1']['kernel'].astype(BF16)
    h = fused_mlp.dense_gelu(y.reshape(-1, c), k0, p['Dense_0']['bias'], **cfg)
    out = fused_mlp.dense_residual(h, k1, p['Dense_1']['bias'], x.reshape(-1, c), **cfg)
    return out.reshape(x.shape)
  return channel


def functional_forward(channel, patch, token_beta=False):
  """Mixer inference in the 'snc' layout with `channel(y, x, p) -> x + mlp(y)`."""
  def fwd(params, images):
    stem = params['stem']
    x = layout_lib.patches(images.astype(BF16), patch, 'snc')
    x = x @ stem['kernel'].reshape(-1, stem['kernel'].shape[-1]).astype(BF16) + stem[
        'bias'].astype(BF16)
    i = 0
    while f'MixerBlock_{i}' in params:
      b = params[f'MixerBlock_{i}']
      t = b['token_mixing']
      y = layer_norm(x, b['LayerNorm_0'])
      y = layout_lib.token_matmul(y, t['Dense_0']['kernel'].astype(BF16), 'snc')
      y = jax.nn.gelu(y + t['Dense_0']['bias'].astype(BF16)[:, None, None], approximate=True)
      y = layout_lib.token_matmul(y, t['Dense_1']['kernel'].astype(BF16), 'snc')
      if token_beta:
        x = y + (x + t['Dense_1']['bias'].astype(BF16)[:, None, None])
      else:
        x = x + y + t['Dense_1']['bias'].astype(BF16)[:, None, None]
      x = channel(layer_norm(x, b['LayerNorm_1']), x, b['channel_mixing'])
      i += 1
    x = layer_norm(x, params['pre_head_layer_norm'])
    pre = jnp.mean(x.astype(jnp.float32), axis=0)
    h = params['head']
    return (pre.astype(BF16) @ h['kernel'].astype(BF16) + h['bias'].astype(BF16)).astype(
        jnp.float32)
  return fwd


def time_fwd(name, fn, params, images, peak, flops, ref=None, want_hlo=True):
  try:
    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(params, images).compile()
    comp = time.perf_counter() - t0
    out = compiled(params, images)
    err = None if ref is None else float(jnp.max(jnp.abs(out - ref)))
    res = measure(lambda: compiled(params, images), peak=peak, images_per_step=images.shape[0],
                  flops_per_step=images.shape[0] * flops, repeats=3, min_time=0.3)
    emit({'what': 'forward', 'variant': name, 'batch': images.shape[0],
          'img_per_s': res['img_per_s'], 'of_peak': res['fraction_of_peak'],
          'peak_tflops': sum(res['peak_flops_runs']) / len(res['peak_flops_runs']) / 1e12,
          'runs': res['img_per_s_runs'], 'compile_s': comp, 'max_abs_diff_vs_model': err,
          'hlo': hlo_stats(compiled) if want_hlo else None})
    return out
  except Exception as e:  # noqa: BLE001
    emit({'what': 'forward', 'variant': name, 'error': repr(e)[:2000]})
    traceback.print_exc()
    return None


def grad_hlo(model, params, images):
  labels = jax.nn.one_hot(jnp.arange(images.shape[0]) % 1000, 1000)

  def loss(p):
    return -jnp.mean(jnp.sum(labels * jax.nn.log_softmax(model.apply({'params': p}, images)), -1))
  t0 = time.perf_counter()
  compiled = jax.jit(jax.grad(loss)).lower(params).compile()
  emit({'what': 'grad_hlo', 'batch': images.shape[0], 'compile_s': time.perf_counter() - t0,
        'hlo': hlo_stats(compiled)})


def main():
  p = argparse.ArgumentParser()
  p.add_argument('--fwd_batch', type=int, default=1024)
  p.add_argument('--train_batch', type=int, default=512)
  p.add_argument('--what', default='model,train')  # model,fn2d,pallas,bound,grad_hlo,train
  p.add_argument('--variant', default='Mixer-B_16')
  p.add_argument('--image', type=int, default=224)
  p.add_argument('--peak', type=int, default=8192)
  p.add_argument('--train_modes', default='train')
  p.add_argument('--randaug_mode', default='auto')
  p.add_argument('--pallas_configs', default='[]')  # JSON list of kernel kwargs
  a = p.parse_args()
  what = a.what.split(',')
  os.makedirs(OUT, exist_ok=True)
  print('jax', jax.__version__, jax.devices(), 'XLA_FLAGS', os.environ.get('XLA_FLAGS'),
        flush=True)
  peak = MatmulPeak(size=a.peak, dtype=BF16, min_time=0.3)
  flops = analytic_flops(variant=a.variant, image_size=a.image, num_classes=1000)['total']
  model = models.create_model(a.variant, num_classes=1000, dtype='bfloat16')
  images = jax.random.uniform(jax.random.key(1), (a.fwd_batch, a.image, a.image, 3), jnp.float32, -1, 1)
  params = jax.jit(lambda r: model.init(r, images[:1])['params'])(jax.random.key(0))
  head = params['head']  # a random head, so logits differ between images
  params = dict(params, head=dict(head, kernel=0.02 * jax.random.normal(
      jax.random.key(3), head['kernel'].shape)))
  ref = None
  if 'model' in what:
    ref = time_fwd('model', lambda p, x: model.apply({'params': p}, x), params, images, peak,
                   flops)
  if 'bound' in what:
    res = bound_lib.bench_bound(model, images, peak=peak, flops=flops, grad=False, repeats=3,
                                min_time=0.3)
    emit({'what': 'forward_bound', 'batch': a.fwd_batch, 'img_per_s': res['img_per_s'],
          'of_peak': res['fraction_of_peak']})
  if 'fn2d' in what:
    time_fwd('fn2d', functional_forward(channel_xla, model.patch_size), params, images, peak, flops, ref)
  if 'beta' in what:
    time_fwd('fn2d_beta', functional_forward(channel_beta, model.patch_size, True), params,
             images, peak, flops, ref)
  if 'pallas' in what:
    for cfg in json.loads(a.pallas_configs):
      time_fwd('pallas ' + json.dumps(cfg), functional_forward(make_channel_pallas(cfg), model.patch_size),
               params, images, peak, flops, ref, want_hlo=False)
  if 'grad_hlo' in what:
    try:
      grad_hlo(model, params, images[:a.train_batch])
    except Exception as e:  # noqa: BLE001
      emit({'what': 'grad_hlo', 'error': repr(e)[:2000]})
  del images, ref
  if 'train' in what:
    try:
      rep = bench_lib.run(['--variant', a.variant, '--image_size', str(a.image),
                           '--matmul_size', str(a.peak), '--batch', str(a.train_batch), '--dtype',
                           'bfloat16', '--modes', a.train_modes, '--randaug_mode',
                           a.randaug_mode, '--repeats', '3', '--min_time', '0.3'])
      for mode in a.train_modes.split(','):
        t = rep['results'][0][mode]
        emit({'what': mode, 'batch': a.train_batch, 'img_per_s': t['img_per_s'],
              'of_peak': t['fraction_of_peak'], 'runs': t['img_per_s_runs'],
              'compile_s': t['compile_s'], 'augment_only_ms': t.get('augment_only_ms'),
              'randaug_mode': a.randaug_mode})
    except Exception as e:  # noqa: BLE001
      emit({'what': 'train', 'error': repr(e)[:2000]})
      traceback.print_exc()


if __name__ == '__main__':
  sys.exit(main())
