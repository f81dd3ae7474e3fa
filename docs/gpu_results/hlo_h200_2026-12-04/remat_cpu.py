"""Temp bytes of a Mixer train-step gradient (XLA memory_analysis), with and without remat."""
import json, sys, time
import jax, jax.numpy as jnp
from mixer_flax import models
from mixer_flax.training import losses

variant = sys.argv[1]; batches = [int(b) for b in sys.argv[2].split(',')]
dtype = sys.argv[3] if len(sys.argv) > 3 else 'float32'
for batch in batches:
  for remat in (False, True):
    model = models.create_model(variant, num_classes=1000, remat=remat, dtype=dtype)
    params = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 224, 224, 3))))['params']
    images = jax.ShapeDtypeStruct((batch, 224, 224, 3), jnp.float32)
    labels = jax.ShapeDtypeStruct((batch, 1000), jnp.float32)
    def loss(p, x, y):
      logits = model.apply({'params': p}, x, train=True, rngs={'dropout': jax.random.key(1)})
      return jnp.mean(losses.softmax_xent(logits, y))
    t0 = time.time()
    compiled = jax.jit(jax.grad(loss)).lower(params, images, labels).compile()
    m = compiled.memory_analysis()
    print(json.dumps(dict(variant=variant, dtype=dtype, batch=batch, remat=remat,
        temp_mib=m.temp_size_in_bytes / 2**20, arg_mib=m.argument_size_in_bytes / 2**20,
        out_mib=m.output_size_in_bytes / 2**20, compile_s=round(time.time() - t0, 1))), flush=True)
