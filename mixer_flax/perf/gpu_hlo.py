"""What XLA builds for Mixer on a GPU, compiled on a machine without one.

    python scripts/gpu_hlo.py --target h200 --batch 1024 --modes forward
    python scripts/gpu_hlo.py --target h200 --batch 512 --modes grad --formulation snc_md_gelu_remat

JAX compiles for a GPU *target description* instead of a device (deviceless AOT), so
the kernels XLA would launch on an H100/H200 can be inspected on any machine that has
JAX's CUDA plugin installed (`pip install "jax[cuda12]"`; no GPU or driver needed).
Per mode it reports the cuBLAS GEMMs and their epilogues (BIAS, BIAS_GELU,
BIAS_GELU_AUX, beta = 1 residual adds), the element-wise / reduction kernels, the
bytes every kernel reads and writes (its operand and result shapes), and XLA's scratch
(`temp_MiB`: e.g. the activations kept for the backward, see `--remat`). These are
compile-time counts, not measured speeds: they say which formulation moves less
memory, and a device run (`scripts/gpu_bench.sh`) says what that is worth.

'grad' is `jax.grad` of softmax cross-entropy (the backward pass without the optimizer).
GEMM algorithms are not autotuned without a device; kernel choice and fusion are.
`--target_config FILE` takes a real device's description instead (on a GPU machine:
`jax._src.lib.xla_client.get_topology_for_devices(jax.devices()).target_config`).
"""

from __future__ import annotations

import argparse
import collections
import json
import re
from typing import Any

from mixer_flax import backends, entry

# Hardware facts of the targets (NVIDIA data sheets): SMs, memory, bandwidth, caches.
_TARGET = '''gpu_device_info {{
  threads_per_block_limit: 1024 threads_per_warp: 32 shared_memory_per_block: 49152
  shared_memory_per_core: 233472 threads_per_core_limit: 2048 core_count: 132
  fpus_per_core: 128 block_dim_limit_x: 2147483647 block_dim_limit_y: 65535
  block_dim_limit_z: 65535 memory_bandwidth: {bandwidth} l2_cache_size: 52428800
  clock_rate_ghz: 1.98 device_memory_size: {memory} shared_memory_per_block_optin: 232448
  cuda_compute_capability {{ major: 9 }}
  registers_per_core_limit: 65536 registers_per_block_limit: 65536
}}
platform_name: "CUDA"
dnn_version_info {{ major: 9 minor: 8 }}
runtime_version {{ major: 12 minor: 8 patch: 0 }}
device_description_str: "{name}"
'''
TARGETS = {
    'h100': _TARGET.format(bandwidth=3_352_320_000_000, memory=84_929_347_584,
                           name='NVIDIA H100 80GB HBM3'),
    'h200': _TARGET.format(bandwidth=4_800_000_000_000, memory=150_754_820_096,
                           name='NVIDIA H200'),
}

_SHAPE = re.compile(r'(bf16|f16|f32|f64|s64|s32|u32|s16|u16|s8|u8|pred)\[([\d,]*)\]')
_BYTES = {'f64': 8, 's64': 8, 'f32': 4, 's32': 4, 'u32': 4, 'bf16': 2, 'f16': 2, 's16': 2,
          'u16': 2, 's8': 1, 'u8': 1, 'pred': 1}
_INSTR = re.compile(r'^\s*(?:ROOT )?%([\w.\-]+) = (\([^=]*?\)|\S+) ([\w\-]+)\((.*)$')
_FREE = {'parameter', 'constant', 'get-tuple-element', 'tuple', 'bitcast'}  # no kernel


def _nbytes(shapes: str) -> int:
  total = 0
  for dtype, dims in _SHAPE.findall(shapes):
    n = 1
    for d in filter(None, dims.split(',')):
      n *= int(d)
    total += n * _BYTES[dtype]
  return total


def _operands(rest: str) -> list[str]:
  """Names of the operands in `rest`, the text after an instruction's opening parenthesis."""
  depth = 1
  for i, ch in enumerate(rest):
    depth += (ch == '(') - (ch == ')')
    if depth == 0:
      return re.findall(r'%([\w.\-]+)', rest[:i])
  return re.findall(r'%([\w.\-]+)', rest)


def hlo_traffic(hlo_text: str, *, top: int = 0) -> dict[str, Any]:
  """Kernel counts and bytes moved by the ENTRY computation of compiled HLO text.

  Every instruction that launches work counts the bytes of its operands (read) and
  result (written). GEMMs are cuBLAS custom calls or plain `dot`s. Returns counts by
  kind (`gemm`, `epilogue:<name>`, `gemm_beta_1`, `fusion:<kind>`, `op:<opcode>`),
  `gemm_bytes` / `other_read_bytes` / `other_written_bytes`, the same in GB (1e9 bytes)
  with `total_GB`, and, with `top`, the `top` largest non-GEMM kernels as
  `(GB, name, kind, result shape)`.
  """
  entry = hlo_text[hlo_text.rfind('\nENTRY'):]
  size: dict[str, int] = {}
  counts: collections.Counter = collections.Counter()
  gemm = read = written = 0
  kernels = []
  for line in entry.splitlines()[1:]:
    m = _INSTR.match(line)
    if not m:
      continue
    name, shapes, opcode, rest = m.groups()
    size[name] = _nbytes(shapes)
    if opcode in _FREE:
      continue
    r, w = sum(size.get(o, 0) for o in _operands(rest)), size[name]
    target = re.search(r'custom_call_target="([^"]+)"', rest)
    if opcode == 'dot' or (target and re.search('matmul|gemm', target.group(1))):
      counts['gemm'] += 1
      epilogue = re.search(r'"epilogue":"(\w+)"', rest)
      if epilogue:
        counts['epilogue:' + epilogue.group(1)] += 1
      counts['gemm_beta_1'] += bool(re.search(r'"beta":1[,}]', rest))
      workspace = re.search(r', s8\[(\d+)\]\{0\}\)$', shapes)  # cuBLAS scratch, not data
      gemm += r + w - (int(workspace.group(1)) if workspace else 0)
      continue
    if opcode == 'fusion':
      backend = re.search(r'"kind":"(__[\w$]+)"', rest)
      kind = backend.group(1) if backend else re.search(r'kind=(k\w+)', rest).group(1)
    else:
      kind = 'op:' + (target.group(1) if target else opcode)
    counts[kind if kind.startswith('op:') else 'fusion:' + kind] += 1
    read, written = read + r, written + w
    kernels.append((r + w, name, kind, shapes[:64]))
  out: dict[str, Any] = dict(counts)
  out.update(gemm_bytes=gemm, other_read_bytes=read, other_written_bytes=written,
             gemm_GB=round(gemm / 1e9, 2), other_read_GB=round(read / 1e9, 2),
             other_written_GB=round(written / 1e9, 2),
             total_GB=round((gemm + read + written) / 1e9, 2))
  if top:
    kernels.sort(reverse=True)
    out['top'] = [(round(b / 1e9, 3), n, k, s) for b, n, k, s in kernels[:top]]
  return out


def compile_for_target(fn: Any, args: tuple[Any, ...], target_config: str) -> Any:
  """`jax.jit(fn)` compiled for a one-GPU target on this (GPU-less) machine."""
  import jax
  from jax.experimental import topologies
  try:
    topology = topologies.get_topology_desc(platform='cuda', target_config=target_config,
                                            topology='1x1x1')
  except Exception as e:  # noqa: BLE001 - re-raised with what to install
    raise RuntimeError(f'Compiling for a GPU target failed ({e}). It needs JAX\'s CUDA plugin '
                       '(pip install "jax[cuda12]") and a process that has not started a JAX '
                       'backend yet: run scripts/gpu_hlo.py on its own.') from e
  mesh = topologies.make_mesh(topo=topology, mesh_shape=(1,), axis_names=('x',))
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  specs = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sharding),
                       args)
  return jax.jit(fn).lower(*specs).compile()


def mixer_programs(args: argparse.Namespace) -> dict[str, tuple[Any, tuple[Any, ...]]]:
  """The model's forward and loss gradient as `(fn, abstract args)` per requested mode."""
  import jax
  import jax.numpy as jnp

  from mixer_flax import models
  from mixer_flax.training import losses
  overrides = dict(dtype=jnp.bfloat16 if args.dtype == 'bfloat16' else jnp.float32,
                   remat=args.remat)
  model = models.create_model(args.variant, num_classes=args.num_classes,
                              formulation=args.formulation, **overrides)
  images = jax.ShapeDtypeStruct((args.batch, args.image_size, args.image_size, 3),
                                overrides['dtype'])
  params = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(
      (1, args.image_size, args.image_size, 3))))['params']

  def loss(p, x, labels):  # the trainer's softmax cross-entropy, one-hot labels
    return jnp.mean(losses.softmax_xent(model.apply({'params': p}, x, train=True), labels))

  labels = jax.ShapeDtypeStruct((args.batch, args.num_classes), jnp.float32)
  programs = {'forward': (lambda p, x: model.apply({'params': p}, x), (params, images)),
              'grad': (jax.grad(loss), (params, images, labels))}
  return {m: programs[m] for m in args.modes.split(',')}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
  """Command-line arguments (module doc); unknown --modes are rejected."""
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--target', default='h200', choices=sorted(TARGETS))
  p.add_argument('--target_config', default='', help='file with a device description (text)')
  p.add_argument('--variant', default='Mixer-B_16')
  p.add_argument('--image_size', type=int, default=224)
  p.add_argument('--num_classes', type=int, default=1000)
  p.add_argument('--batch', type=int, default=1024)
  p.add_argument('--dtype', default='bfloat16', choices=('bfloat16', 'float32'))
  p.add_argument('--modes', default='forward,grad', help="comma-separated: forward, grad")
  gpu_default = backends.DEFAULTS['gpu'].formulation
  p.add_argument('--formulation', default=gpu_default,
                 help=f"models/formulations.py name (the GPU's default: {gpu_default})")
  p.add_argument('--remat', action='store_true')
  p.add_argument('--top', type=int, default=8, help='largest non-GEMM kernels to list')
  p.add_argument('--hlo_dir', default='', help='also write each compiled HLO text here')
  p.add_argument('--json', default='', help='write the report to this JSON file')
  args = p.parse_args(argv)
  bad = set(args.modes.split(',')) - {'forward', 'grad'}
  if bad:
    p.error(f'--modes: unknown {sorted(bad)}; use forward and/or grad')
  return args


@entry.command
def run(argv: list[str] | None = None) -> dict[str, Any]:
  """Compiles each mode for the target and prints / returns its `hlo_traffic`."""
  import os

  import jax
  args = parse_args(argv)
  jax.config.update('jax_platforms', 'cpu')  # the host runs the compiler; no GPU is opened
  config = open(args.target_config).read() if args.target_config else TARGETS[args.target]
  report: dict[str, Any] = {'target': args.target_config or args.target,
                            'jax': jax.__version__, 'xla_flags': os.environ.get('XLA_FLAGS', ''),
                            'args': vars(args), 'modes': {}}
  for mode, (fn, fn_args) in mixer_programs(args).items():
    compiled = compile_for_target(fn, fn_args, config)
    if args.hlo_dir:
      os.makedirs(args.hlo_dir, exist_ok=True)
      with open(os.path.join(args.hlo_dir, f'{mode}.hlo.txt'), 'w') as f:
        f.write(compiled.as_text())
    report['modes'][mode] = stats = hlo_traffic(compiled.as_text(), top=args.top)
    stats['temp_MiB'] = round(compiled.memory_analysis().temp_size_in_bytes / 2**20, 1)
    print(mode, json.dumps({k: v for k, v in stats.items()
                            if k != 'top' and not k.endswith('_bytes')}), flush=True)
    for row in stats.get('top', []):
      print('  ', row)
  if args.json:
    with open(args.json, 'w') as f:
      json.dump(report, f, indent=1)
  return report
