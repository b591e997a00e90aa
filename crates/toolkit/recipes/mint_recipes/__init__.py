"""The training recipes `mint train` runs (embedded in the toolkit, written into a temporary
folder and run as ``python -m mint_recipes.train_head``), and what they share with the research
drivers: the data sets and the AUC (`data`), and the one training loop (`fit`).

Needs numpy and torch only (Debian's python3-numpy and python3-torch); onnx for the export.
"""
