"""eval/__init__.py: evaluators are built from config.evals, each with its name and interval."""

from mixer_flax import config as config_lib
from mixer_flax import eval as eval_lib
from mixer_flax import models
from mixer_flax.eval import classification, fewshot


def test_build_evaluators_follows_config_evals():
  config = config_lib.base_config()
  config.update(model_name='Mixer-Ti_4', image_size=16, batch_eval=8, num_classes=10)
  config.evals = dict(
      val=dict(type='classification', every=3, split='test'),
      probe=dict(type='fewshot', every=10, datasets=('sklearn_digits',), image_size=16))
  model = models.create_model('Mixer-Ti_4', num_classes=10)
  built = {e.name: e for e in eval_lib.build_evaluators(config, model)}
  val, probe = built['val'], built['probe']
  assert isinstance(val, classification.ClassificationEvaluator)
  assert (val.name, val.every, val.config.eval_split) == ('val', 3, 'test')
  assert val.data() == [('imagenet2012', 'test')]
  assert isinstance(probe, fewshot.FewShotEvaluator)
  assert (probe.name, probe.every, probe.datasets[0][0]) == ('probe', 10, 'sklearn_digits')
  assert probe.options['shots'] == fewshot.DEFAULT_SHOTS  # left out: the evaluator's default
  assert probe.data() == [('sklearn_digits', 'train'), ('sklearn_digits', 'test')]
  assert set(eval_lib.EVALUATORS) == {'classification', 'fewshot'}
