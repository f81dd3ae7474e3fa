"""Issue-14 GPU probe: Pallas fused channel-mixing kernels vs XLA, one process, <= ~150 s.

Needs jax, numpy and flax (no TensorFlow or ml_collections): the kernels are loaded from
mixer_flax/models/fused_mlp.py by file path (--kernels; default: ./mixer_flax/models/
fused_mlp.py from the repository root, else the copy next to this script).

Rows (each printed with a UTC timestamp and appended to --json as one JSON line at once):
  peak         8192^3 bf16 jnp.matmul, random normal inputs (start and end of the run)
  gemm1 (M x 768 -> 3072):  xla_gemm (x @ w), xla_gelu (gelu(x @ w + b), bf16 as the model),
               xla_ln_gelu (flax LayerNorm formula in bf16 + the same), pallas dense_gelu per
               config
  gemm2 (M x 3072 -> 768):  xla_gemm, xla_residual (r + (h @ w + b)), pallas dense_residual
  channel_half x + MLP(LN(x)) as the model computes it (XLA) vs channel_mlp_fused below
               with the fastest configs of each sweep (LN in the kernel / LN by XLA); then
               layernorm_dense_gelu for the 3 fastest dense_gelu configs
Each time: median of 5 samples; a sample = enough back-to-back calls for ~20 ms, then
block_until_ready on the last call's result (one stream: it finishes last). TFLOP/s counts
2*M*K*N; 'of_peak' divides by the start-of-run peak. Pallas rows also carry max_rel_err on
the first 1024 rows vs a float32 HIGHEST-precision reference (catches wrong GPU results).
A config that fails to compile or run records its error and the sweep goes on.

GPU:      python pallas_probe.py --json /path/out.jsonl            (M = 196 * 1024)
          add --model B_16,1024 (from the repo root; needs ml_collections) for whole-model
          inference, plain vs MlpMixer(fused_channel_mixing=True) with the fastest tiles
          (max_rel_err: fused logits vs plain bf16 logits); about +1 minute (two compiles)
CPU test: python pallas_probe.py --interpret --m 256 --c 64 --hidden 128 --max_configs 2 \
              --peak_n 256 --json /tmp/probe.jsonl
XLA_FLAGS: the project's default (--xla_gpu_enable_triton_gemm=false) is appended unless
XLA_FLAGS already names that flag, so the XLA rows are what mixer_flax users get.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import pathlib
import statistics
import sys
import time

if '--xla_gpu_enable_triton_gemm' not in os.environ.get('XLA_FLAGS', ''):
  os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                             ' --xla_gpu_enable_triton_gemm=false').strip()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

CONFIGS = [  # block_m, block_n, block_k, num_warps, num_stages
    (128, 128, 64, 4, 3), (128, 256, 64, 8, 3), (256, 128, 64, 8, 3), (128, 128, 32, 4, 4),
    (64, 256, 64, 4, 4), (128, 256, 32, 8, 4), (128, 128, 64, 8, 4), (64, 128, 64, 4, 4)]
T0 = time.time()


def load_kernels(path: str | None):
  """Imports fused_mlp.py by path (no mixer_flax package import: it pulls ml_collections)."""
  here = pathlib.Path(__file__).resolve().parent
  candidates = [path] if path else ['mixer_flax/models/fused_mlp.py', str(here / 'fused_mlp.py')]
  for cand in candidates:
    if pathlib.Path(cand).is_file():
      spec = importlib.util.spec_from_file_location('fused_mlp', cand)
      mod = importlib.util.module_from_spec(spec)
      sys.modules['fused_mlp'] = mod  # dataclasses look their module up there
      spec.loader.exec_module(mod)
      return mod, str(pathlib.Path(cand).resolve())
  sys.exit(f'fused_mlp.py not found in {candidates}; pass --kernels')


class Log:
  """Prints rows and appends them to a JSON-lines file immediately."""

  def __init__(self, path: str):
    self.path = path

  def row(self, **row) -> dict:
    """Stamps, prints and appends one row."""
    row = {'t': time.strftime('%H:%M:%S', time.gmtime()), 'elapsed_s': round(time.time() - T0, 1),
           **row}
    print(json.dumps(row), flush=True)
    with open(self.path, 'a') as f:
      f.write(json.dumps(row) + '\n')
    return row


def timeit(fn, *args, samples: int = 5, target_s: float = 0.02) -> float:
  """Median seconds per call of a compiled fn (warm-up first; see module doc)."""
  jax.block_until_ready(fn(*args))
  t = time.perf_counter()
  jax.block_until_ready(fn(*args))
  reps = max(1, min(50, int(target_s / max(time.perf_counter() - t, 1e-6))))
  times = []
  for _ in range(samples):
    t = time.perf_counter()
    for _ in range(reps):
      out = fn(*args)
    jax.block_until_ready(out)
    times.append((time.perf_counter() - t) / reps)
  return statistics.median(times)


def peak(n: int) -> float:
  """TFLOP/s of an n^3 bf16 matmul."""
  ka, kb = jax.random.split(jax.random.PRNGKey(1))
  a = jax.random.normal(ka, (n, n), jnp.bfloat16)
  b = jax.random.normal(kb, (n, n), jnp.bfloat16)
  return 2 * n**3 / timeit(jax.jit(jnp.matmul), a, b) / 1e12


def xla_layer_norm(x, scale, bias, eps: float = 1e-6):
  """As flax nn.LayerNorm(dtype=x.dtype): float32 stats (fast variance), output in x.dtype."""
  xf = x.astype(jnp.float32)
  mean = xf.mean(-1, keepdims=True)
  var = jnp.maximum((xf * xf).mean(-1, keepdims=True) - mean * mean, 0.0)
  return ((xf - mean) * (jax.lax.rsqrt(var + eps) * scale) + bias).astype(x.dtype)


def xla_dense(x, p):
  """As flax nn.Dense(dtype=x.dtype): params cast to x.dtype, bias added in x.dtype."""
  return x @ p['kernel'].astype(x.dtype) + p['bias'].astype(x.dtype)


def channel_mlp_fused(x, params_dense0, params_dense1, *, config, residual, ln_params=None,
                      config_out=None, interpret: bool = False, kernels=None):
  """Returns residual + Dense_1(gelu(Dense_0(LN(x) if ln_params else x))) (Pallas kernels).

  x (..., C) in the compute dtype; params_dense* are the flax Dense dicts (float32 is fine);
  residual (..., C); ln_params the LayerNorm_1 dict {'scale', 'bias'} to fuse the LayerNorm.
  config / config_out: fused_mlp.KernelConfig of the two GEMMs. For the whole channel half of
  a block, `x + MLP(LN(x))`, call channel_mlp_fused(x, d0, d1, residual=x, ln_params=ln).
  """
  fm = kernels or FM
  rows = x.reshape(-1, x.shape[-1])
  d0 = (params_dense0['kernel'], params_dense0['bias'])
  if ln_params is None:
    h = fm.dense_gelu(rows, *d0, config=config, interpret=interpret)
  else:
    h = fm.layernorm_dense_gelu(rows, ln_params['scale'], ln_params['bias'], *d0, config=config,
                                interpret=interpret)
  y = fm.dense_residual(h, params_dense1['kernel'], params_dense1['bias'],
                        residual.reshape(-1, residual.shape[-1]),
                        config=config_out or config, interpret=interpret)
  return y.reshape(residual.shape)


def rel_err(out, ref_fn, n_rows: int = 1024) -> float:
  """Max |out - ref| / max |ref| over the first n_rows (ref_fn(n): the reference)."""
  ref = np.asarray(ref_fn(n_rows), np.float64)
  got = np.asarray(out[:n_rows], np.float64)
  return float(np.max(np.abs(got - ref)) / max(np.max(np.abs(ref)), 1e-30))


def main() -> None:
  """Runs the rows listed in the module doc."""
  ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  ap.add_argument('--m', type=int, default=196 * 1024)
  ap.add_argument('--c', type=int, default=768)
  ap.add_argument('--hidden', type=int, default=3072)
  ap.add_argument('--peak_n', type=int, default=8192)
  ap.add_argument('--max_configs', type=int, default=len(CONFIGS))
  ap.add_argument('--budget', type=float, default=135.0, help='no new row after this (s)')
  ap.add_argument('--json', default='pallas_probe.jsonl')
  ap.add_argument('--kernels', default=None, help='path of fused_mlp.py')
  ap.add_argument('--interpret', action='store_true', help='Pallas interpret mode (CPU)')
  ap.add_argument('--model', default='', help="e.g. 'B_16,1024': also time the whole model "
                  '(mixer_flax from the cwd, needs ml_collections) plain vs fused_channel_mixing')
  args = ap.parse_args()
  global FM
  FM, kpath = load_kernels(args.kernels)
  log = Log(args.json)
  m, c, d = args.m, args.c, args.hidden
  bf, f32, hi = jnp.bfloat16, jnp.float32, jax.lax.Precision.HIGHEST
  log.row(row='env', jax=jax.__version__, device=str(jax.devices()[0].device_kind),
          xla_flags=os.environ.get('XLA_FLAGS', ''), kernels=kpath, m=m, c=c, hidden=d,
          interpret=args.interpret)
  pk = peak(args.peak_n)
  log.row(row='peak', when='start', n=args.peak_n, tflops=round(pk, 1))

  ks = jax.random.split(jax.random.PRNGKey(0), 8)
  x = jax.random.normal(ks[0], (m, c), bf)
  w1 = (jax.random.normal(ks[1], (c, d)) / np.sqrt(c)).astype(bf)
  b1 = 0.1 * jax.random.normal(ks[2], (d,))
  h = jax.random.normal(ks[3], (m, d), bf)
  w2 = (jax.random.normal(ks[4], (d, c)) / np.sqrt(d)).astype(bf)
  b2 = 0.1 * jax.random.normal(ks[5], (c,))
  ln_s, ln_b = 1.0 + 0.1 * jax.random.normal(ks[6], (2, c))
  configs = [FM.KernelConfig(*cfg) for cfg in CONFIGS[:args.max_configs]]
  ip = args.interpret
  fastest: dict[str, float] = {}  # row name -> fastest ms (over configs)

  def over_budget(name: str) -> bool:
    if time.time() - T0 < args.budget:
      return False
    log.row(row=name, skipped='budget')
    return True

  def measure(name: str, fn, fargs, flops: float, check=None, **info) -> float | None:
    if over_budget(name):
      return None
    try:
      f = jax.jit(fn)
      t = timeit(f, *fargs)
      extra = {} if check is None else {'max_rel_err': rel_err(f(*fargs), check)}
      fastest[name] = min(fastest.get(name, np.inf), round(t * 1e3, 4))
      log.row(row=name, ms=round(t * 1e3, 4), tflops=round(flops / t / 1e12, 1),
              of_peak=round(flops / t / 1e12 / pk, 4), **extra, **info)
      return t
    except Exception as e:  # noqa: BLE001  record and go on with the sweep
      log.row(row=name, error=f'{type(e).__name__}: {str(e)[:600]}', **info)
      return None

  fl1, fl2 = 2.0 * m * c * d, 2.0 * m * d * c
  ref1 = lambda n: jax.nn.gelu(jnp.dot(x[:n].astype(f32), w1.astype(f32), precision=hi) + b1)  # noqa: E731
  xn = lambda n: xla_layer_norm(x[:n], ln_s, ln_b).astype(f32)  # noqa: E731
  ref_ln = lambda n: jax.nn.gelu(jnp.dot(xn(n), w1.astype(f32), precision=hi) + b1)  # noqa: E731
  ref2 = lambda n: x[:n].astype(f32) + (  # noqa: E731
      jnp.dot(h[:n].astype(f32), w2.astype(f32), precision=hi) + b2)

  measure('gemm1_xla_gemm', lambda x, w: x @ w, (x, w1), fl1)
  measure('gemm1_xla_gelu', lambda x, w, b: jax.nn.gelu(x @ w + b.astype(bf)), (x, w1, b1), fl1)
  measure('gemm1_xla_ln_gelu', lambda x, s, t, w, b: jax.nn.gelu(
      xla_layer_norm(x, s, t) @ w + b.astype(bf)), (x, ln_s, ln_b, w1, b1), fl1)
  timed = []
  for cfg in configs:
    t = measure('gemm1_pallas_dense_gelu', lambda x, w, b, cfg=cfg: FM.dense_gelu(
        x, w, b, config=cfg, interpret=ip), (x, w1, b1), fl1, ref1, config=cfg_list(cfg))
    if t is not None:
      timed.append((t, cfg))
  best1 = [cfg for _, cfg in sorted(timed, key=lambda r: r[0])[:3]] or configs[:1]

  measure('gemm2_xla_gemm', lambda h, w: h @ w, (h, w2), fl2)
  measure('gemm2_xla_residual', lambda h, w, b, r: r + (h @ w + b.astype(bf)),
          (h, w2, b2, x), fl2)
  timed = []
  for cfg in configs:
    t = measure('gemm2_pallas_dense_residual', lambda h, w, b, r, cfg=cfg: FM.dense_residual(
        h, w, b, r, config=cfg, interpret=ip), (h, w2, b2, x), fl2, ref2, config=cfg_list(cfg))
    if t is not None:
      timed.append((t, cfg))
  best2 = min(timed, key=lambda r: r[0])[1] if timed else configs[0]

  # The channel half of a Mixer block, x + MLP(LN(x)): float32 params as the model keeps them.
  d0, d1 = {'kernel': w1.astype(f32), 'bias': b1}, {'kernel': w2.astype(f32), 'bias': b2}
  lnp = {'scale': ln_s, 'bias': ln_b}
  ref_half = lambda n: x[:n].astype(f32) + (jnp.dot(  # noqa: E731
      ref_ln(n).astype(bf).astype(f32), w2.astype(f32), precision=hi) + b2)
  measure('channel_half_xla', lambda x, d0, d1, ln: x + xla_dense(jax.nn.gelu(xla_dense(
      xla_layer_norm(x, ln['scale'], ln['bias']), d0)), d1), (x, d0, d1, lnp), fl1 + fl2,
      ref_half)
  pair = [cfg_list(best1[0]), cfg_list(best2)]
  measure('channel_half_pallas', lambda x, d0, d1, ln: channel_mlp_fused(
      x, d0, d1, config=best1[0], config_out=best2, residual=x, ln_params=ln, interpret=ip),
      (x, d0, d1, lnp), fl1 + fl2, ref_half, config=pair)
  measure('channel_half_pallas_xla_ln', lambda x, d0, d1, ln: channel_mlp_fused(
      xla_layer_norm(x, ln['scale'], ln['bias']), d0, d1, config=best1[0], config_out=best2,
      residual=x, interpret=ip), (x, d0, d1, lnp), fl1 + fl2, ref_half, config=pair)
  for cfg in best1:
    measure('gemm1_pallas_ln_dense_gelu', lambda x, s, t, w, b, cfg=cfg: FM.layernorm_dense_gelu(
        x, s, t, w, b, config=cfg, interpret=ip), (x, ln_s, ln_b, w1, b1), fl1, ref_ln,
        config=cfg_list(cfg))
  if args.model:
    # LayerNorm in the kernel unless the channel-half rows say XLA's LayerNorm is faster.
    fuse_ln = not (fastest.get('channel_half_pallas_xla_ln', np.inf)
                   < fastest.get('channel_half_pallas', np.inf))
    whole_model(args, log, measure, best1[0], best2, fuse_ln)
  log.row(row='summary_fastest_ms', **fastest)
  log.row(row='peak', when='end', n=args.peak_n, tflops=round(peak(args.peak_n), 1))


MODELS = {  # patch, C, blocks, D_S, D_C (paper Table 1); 'Ti_4' is a tiny CPU check
    'B_16': (16, 768, 12, 384, 3072), 'L_16': (16, 1024, 24, 512, 4096),
    'Ti_4': (4, 32, 2, 16, 64)}


def whole_model(args, log, measure, cfg0, cfg1, fuse_ln: bool) -> None:
  """Mixer inference, bf16 compute / f32 params, plain vs fused_channel_mixing (best tiles)."""
  name, batch = args.model.split(',')
  p, c, blocks, ds, dc = MODELS[name]
  image = 224 if p == 16 else 16
  try:
    sys.path.insert(0, os.getcwd())
    from mixer_flax.models import fused_mlp as repo_fm
    from mixer_flax.models.mixer import MlpMixer
  except Exception as e:  # noqa: BLE001
    log.row(row='model', error=f'{type(e).__name__}: {e}')
    return
  # The sweep's fastest tiles become the kernels' defaults inside the model.
  repo_fm.DEFAULT_CONFIGS['layernorm_dense_gelu'] = repo_fm.KernelConfig(*cfg_list(cfg0))
  repo_fm.DEFAULT_CONFIGS['dense_gelu'] = repo_fm.KernelConfig(*cfg_list(cfg0))
  repo_fm.DEFAULT_CONFIGS['dense_residual'] = repo_fm.KernelConfig(*cfg_list(cfg1))
  repo_fm.FUSE_LAYER_NORM = fuse_ln
  model = MlpMixer(num_classes=1000, patch_size=p, hidden_dim=c, num_blocks=blocks,
                   tokens_mlp_dim=ds, channels_mlp_dim=dc, dtype=jnp.bfloat16)
  images = jax.random.uniform(jax.random.PRNGKey(0), (int(batch), image, image, 3),
                              minval=-1.0, maxval=1.0)
  params = jax.jit(model.init)(jax.random.PRNGKey(1), images[:1])['params']
  params = jax.tree.map(lambda a: a + 0.02 * jax.random.normal(jax.random.PRNGKey(2), a.shape),
                        params)
  s = (image // p) ** 2
  flops = int(batch) * 2 * (s * 3 * p * p * c + blocks * (2 * s * ds * c + 2 * s * c * dc)
                            + c * 1000)
  plain_logits = jax.jit(model.apply)({'params': params}, images)
  for fused in (False, True):
    m = model.clone(fused_channel_mixing=fused)
    t = measure(f'model_{name}_b{batch}_{"fused" if fused else "plain"}',
                lambda prm, im, m=m: m.apply({'params': prm}, im), (params, images), flops,
                (lambda n: plain_logits[:n]) if fused else None,
                config=[cfg_list(cfg0), cfg_list(cfg1)] if fused else None,
                fuse_layer_norm=fuse_ln if fused else None)
    if t:
      log.row(row='model_img_s', fused=fused, img_s=round(int(batch) / t, 1))


def cfg_list(cfg) -> list[int]:
  """[block_m, block_n, block_k, num_warps, num_stages]."""
  return [cfg.block_m, cfg.block_n, cfg.block_k, cfg.num_warps, cfg.num_stages]


FM = None

if __name__ == '__main__':
  main()
