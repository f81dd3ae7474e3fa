"""perf/gpu_hlo.py: kernel and byte counts of compiled HLO, and the deviceless GPU compile."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

from mixer_flax.perf import gpu_hlo

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The ENTRY of `gelu(a @ w + b)` compiled for an H200 by `compile_for_target` (metadata cut).
_CUBLAS_ENTRY = '''
ENTRY %main.1 (a.1: bf16[4096,768], w.1: bf16[768,3072], b.1: bf16[3072]) -> bf16[4096,3072] {
  %b.1 = bf16[3072]{0} parameter(2), sharding={replicated}
  %w.1 = bf16[768,3072]{1,0} parameter(1), sharding={replicated}
  %a.1 = bf16[4096,768]{1,0} parameter(0), sharding={replicated}
  %cublas-lt-matmul.3 = (bf16[4096,3072]{1,0}, s8[4194304]{0}) custom-call(%a.1, %w.1, %b.1), \
custom_call_target="__cublas$lt$matmul", backend_config={"operation_queue_id":"0",\
"gemm_backend_config":{"selected_algorithm":"0","alpha_real":1,"beta":BETA,\
"epilogue":"BIAS_GELU","autotune_workspace_size":"4194304","scale_mode":0}}
  ROOT %get-tuple-element.1 = bf16[4096,3072]{1,0} get-tuple-element(%cublas-lt-matmul.3), index=0
}
'''


def test_bytes_of_a_cpu_program():
  # exp(x) * 2 summed over rows: one fusion reads the 4 MiB input and writes 1024 floats.
  x = jnp.zeros((1024, 1024), jnp.float32)
  compiled = jax.jit(lambda x: jnp.sum(jnp.exp(x) * 2, axis=1)).lower(x).compile()
  stats = gpu_hlo.hlo_traffic(compiled.as_text(), top=5)
  assert stats['other_read_bytes'] == 4 * 2**20 and stats['other_written_bytes'] == 4096
  assert sum(v for k, v in stats.items() if k.startswith('fusion:')) == 1
  assert stats['gemm_bytes'] == 0 and 'gemm' not in stats and len(stats['top']) == 1


@pytest.mark.parametrize('beta', [0, 1])
def test_cublas_gemm_epilogue_and_bytes(beta):
  stats = gpu_hlo.hlo_traffic(_CUBLAS_ENTRY.replace('BETA', str(beta)))
  assert stats['gemm'] == 1 and stats['epilogue:BIAS_GELU'] == 1
  assert stats['gemm_beta_1'] == beta
  # a, w and b read, the output written; the s8 workspace is scratch, not traffic.
  assert stats['gemm_bytes'] == 2 * (4096 * 768 + 768 * 3072 + 3072 + 4096 * 3072)
  assert stats['other_read_bytes'] == stats['other_written_bytes'] == 0


def test_deviceless_compile_sees_the_epilogues_of_the_candidate_formulations(tmp_path):
  pytest.importorskip('jax_plugins.xla_cuda12', reason="needs jax's CUDA plugin (jax[cuda12])")

  def modes(*extra):  # its own process: the compile-only GPU client needs JAX unstarted
    out = tmp_path / 'report.json'
    subprocess.run([sys.executable, os.path.join(ROOT, 'scripts', 'gpu_hlo.py'), '--variant',
                    'Mixer-Ti_16', '--image_size', '32', '--batch', '8', '--num_classes', '10',
                    '--top', '0', '--json', str(out), *extra], check=True, timeout=600,
                   env=dict(os.environ, PYTHONPATH=os.pathsep.join(
                       [ROOT, os.environ.get('PYTHONPATH', '')])))
    return json.loads(out.read_text())['modes']

  plain, levers = modes(), modes('--formulation', 'snc_md_gelu_remat')
  # Mixer-Ti_16 has 4 blocks: channel mixing's bias+GELU is an epilogue either way, token
  # mixing's only with D_S last ('md'); recomputed GELUs give the training-forward AUX form.
  assert plain['forward']['epilogue:BIAS_GELU'] == 4
  assert 'epilogue:BIAS_GELU_AUX' not in plain['grad']
  assert levers['forward']['epilogue:BIAS_GELU'] == 8
  assert levers['grad']['epilogue:BIAS_GELU_AUX'] == 8
  assert levers['forward']['total_GB'] <= plain['forward']['total_GB']
  # Blocks recomputed in the backward pass: XLA keeps far fewer activations for it.
  kept, remat = (modes('--batch', '64', '--modes', 'grad', *r)['grad']['temp_MiB']
                 for r in ((), ('--remat',)))
  assert remat < 0.5 * kept
