"""Table 6's shared inputs: the stdlib code corpus and one tokenizer for all arms (dsmath.sweep.table6_data).

  python -m experiments.run --config configs/table6_data.py --workdir runs/table6/data
"""
from dsmath.sweep.table6_data import default_config


def get_config():
  return default_config()
