import os

# Notebooks validated by nbval run with profile="auto"; in the test suite that must mean the CI profile.
os.environ.setdefault("APO_PROFILE", "smoke")
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
