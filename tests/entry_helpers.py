"""The shared check of the entry-point tests: one `error: ...` line and an exit status."""

import pytest


def one_line_error(capsys, call, status=1) -> str:
  """Runs `call`, which must exit with `status` after one 'error: ...' line on stderr."""
  with pytest.raises(SystemExit) as e:
    call()
  assert e.value.code == status
  err = capsys.readouterr().err
  lines = [line for line in err.splitlines() if line.strip()]
  assert len(lines) == 1 and lines[0].startswith('error: '), err
  return lines[0]
