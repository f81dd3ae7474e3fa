"""Deviceless H200 compile: temp bytes of a Mixer train-step gradient with / without remat."""
import json, sys, time
import jax
jax.config.update('jax_platforms', 'cpu')
import jax.numpy as jnp
from mixer_flax import backends, models
from mixer_flax.perf import gpu_hlo
from mixer_flax.training import losses

variant = sys.argv[1]; batches = [int(b) for b in sys.argv[2].split(',')]
dtype = sys.argv[3] if len(sys.argv) > 3 else 'bfloat16'
formulation = sys.argv[4] if len(sys.argv) > 4 else 'snc'
for batch in batches:
  for remat in (False, True):
    model = models.create_model(variant, num_classes=1000, remat=remat, dtype=dtype,
                                formulation=formulation)
    params = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 224, 224, 3))))['params']
    images = jax.ShapeDtypeStruct((batch, 224, 224, 3), jnp.dtype(dtype))
    labels = jax.ShapeDtypeStruct((batch, 1000), jnp.float32)
    def loss(p, x, y):
      return jnp.mean(losses.softmax_xent(model.apply({'params': p}, x, train=True), y))
    t0 = time.time()
    compiled = gpu_hlo.compile_for_target(jax.grad(loss), (params, images, labels), gpu_hlo.TARGETS['h200'])
    m = compiled.memory_analysis()
    print(json.dumps(dict(target='h200', variant=variant, dtype=dtype, formulation=formulation,
        batch=batch, remat=remat, temp_mib=round(m.temp_size_in_bytes / 2**20, 1),
        arg_mib=round(m.argument_size_in_bytes / 2**20, 1), out_mib=round(m.output_size_in_bytes / 2**20, 1),
        xla_flags=__import__('os').environ.get('XLA_FLAGS', ''),
        compile_s=round(time.time() - t0, 1))), flush=True)
