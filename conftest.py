import os

# Notebooks validated by nbval run with profile="auto"; under pytest that must mean the CI profile, also when a
# single notebook is run (`python -m pytest notebooks/03_gamma_po_noise.ipynb`): hence this file sits at the root.
os.environ.setdefault("APO_PROFILE", "smoke")
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
