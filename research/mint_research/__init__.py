"""Research drivers, not product: the audited models' training (train_audited, train_vit,
train_lm), the experiments that regenerate docs/experiments.md (experiments, vit_experiments,
lm_experiments), and the helpers that make test and benchmark models, demo samples and the
walkthrough's model. Each is run as a module from the checkout's venv, e.g.

    .venv/bin/python -m mint_research.train_audited --variant memorizing --out models/fmnist-memorizing

They share the data helpers, the AUC and the training loop with the recipes `mint train` runs
(`mint_recipes`, crates/toolkit/recipes). scripts/setup.sh makes both packages importable
from .venv.
"""
