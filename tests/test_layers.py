"""The package's floors: no module imports one on a higher floor, and no import cycles.

Read from the source with `ast` (module- and function-level imports alike); docs/design.md
draws the same floors.
"""

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = ROOT / 'mixer_flax'

# Module prefix -> floor; the longest matching prefix wins.
FLOORS = {
    'mixer_flax.config': 0, 'mixer_flax.fileio': 0, 'mixer_flax.backends': 0,
    'mixer_flax.entry': 0,  # how command lines report errors: stdlib only
    'mixer_flax.paper.tables': 0,  # the paper's published numbers: plain data
    'mixer_flax.download': 1, 'mixer_flax.devices': 1,
    'mixer_flax.data': 2, 'mixer_flax.models': 2,
    'mixer_flax.checkpoint': 3,
    'mixer_flax.training': 4,
    'mixer_flax.eval': 5,
    'mixer_flax.validate': 6, 'mixer_flax.validate_data': 6,
    'mixer_flax.preflight': 7, 'mixer_flax.train': 7,
    'mixer_flax.dry_run': 8,
    'mixer_flax.transfer': 8, 'mixer_flax.paper': 8, 'mixer_flax.perf': 8,
    # Entry points: command lines over everything below.
    'mixer_flax.main': 9, 'mixer_flax.transfer.__main__': 9, 'mixer_flax.eval.cli': 9,
    'mixer_flax.checkpoint.cli': 9, 'mixer_flax.paper.reproduce': 9,
    'mixer_flax': 9,  # the package's own __init__
}


def _modules() -> dict[str, pathlib.Path]:
  out = {}
  for path in PACKAGE.rglob('*.py'):
    name = '.'.join(path.relative_to(ROOT).with_suffix('').parts)
    out[name.removesuffix('.__init__')] = path
  return out


def _floor(module: str) -> int:
  keys = [k for k in FLOORS if module == k or module.startswith(k + '.')]
  assert keys, f'{module} has no floor in FLOORS'
  return FLOORS[max(keys, key=len)]


def _imports(modules: dict[str, pathlib.Path]) -> dict[str, set[str]]:
  """module -> the package modules it imports."""
  def resolve(name: str) -> str:
    while name not in modules:
      name = name.rpartition('.')[0]
    return name

  edges = {}
  for module, path in modules.items():
    targets = set()
    for node in ast.walk(ast.parse(path.read_text())):
      if isinstance(node, ast.Import):
        targets |= {resolve(a.name) for a in node.names if a.name.startswith('mixer_flax')}
      elif isinstance(node, ast.ImportFrom) and (node.module or '').startswith('mixer_flax'):
        for a in node.names:
          full = f'{node.module}.{a.name}'
          targets.add(full if full in modules else resolve(node.module))
    edges[module] = targets - {module}
  return edges


def test_no_module_imports_a_higher_floor():
  modules = _modules()
  up = [f'{m} (floor {_floor(m)}) imports {t} (floor {_floor(t)})'
        for m, targets in _imports(modules).items() for t in sorted(targets)
        if _floor(t) > _floor(m) and not m.startswith(t + '.')]  # a package's own __init__
  assert not up, '\n'.join(up)


def test_no_import_cycles():
  edges = _imports(_modules())
  edges = {m: {t for t in ts if not m.startswith(t + '.')} for m, ts in edges.items()}
  state: dict[str, int] = {}

  def visit(m: str, path: list[str]) -> None:
    state[m] = 1
    for t in sorted(edges[m]):
      assert state.get(t) != 1, 'import cycle: ' + ' -> '.join(path + [m, t])
      if t not in state:
        visit(t, path + [m])
    state[m] = 2

  for m in sorted(edges):
    if m not in state:
      visit(m, [])


def test_config_is_plain_data():
  assert not _imports(_modules())['mixer_flax.config']
