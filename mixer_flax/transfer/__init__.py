"""Transfer suites of the paper: VTAB-1k and Avg-5 (`python -m mixer_flax.transfer`)."""
