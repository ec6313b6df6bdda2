"""Train the tiny model for three steps with each of some apo losses and dump the logged metrics as JSON.

tests/test_multiprocess.py runs it on the same global batch of 8 pairs twice: in one process with
batch 8, and under `accelerate launch --multi_gpu --num_processes 2` (on a CPU-only machine the
trainer's `use_cpu=True` turns that into two gloo processes) with batch 4 per process.

    python multiprocess_train.py LOSS[,LOSS...] PER_DEVICE_BATCH OUT.json WORKDIR [no-gather]
"""

import json
import os
import sys

from datasets import load_dataset
from trl import DPOConfig

from apo_utils.bench import synthetic_pairs
from apo_utils.tiny import tiny_causal_lm, tiny_word_tokenizer
from apo_utils.trainer import ApoTrainer

names, per_device, out_path, workdir = sys.argv[1].split(","), int(sys.argv[2]), sys.argv[3], sys.argv[4]
gather = len(sys.argv) < 6 or sys.argv[5] != "no-gather"  # the control: per-process batch statistics

# Datasets built in memory cache their processed copies in a per-process temporary folder that the other
# process cannot see; a file on disk with a shared cache folder works for any number of processes.
os.makedirs(workdir, exist_ok=True)
data_file = os.path.join(workdir, "pairs.jsonl")
if int(os.environ.get("RANK", "0")) == 0 and not os.path.exists(data_file):
    synthetic_pairs(48, 6, seed=0).to_json(data_file)
tok = tiny_word_tokenizer()
results = {}
for name in names:
    # A reference unlike the policy, so the very first step already has non-zero margins to pool.
    model, ref = tiny_causal_lm(tok, seed=0), tiny_causal_lm(tok, seed=1)
    args = DPOConfig(output_dir=os.path.join(workdir, name), per_device_train_batch_size=per_device, max_steps=3,
                     learning_rate=0.5, optim="sgd", logging_steps=1, report_to="none", use_cpu=True, seed=0,
                     data_seed=0, save_strategy="no", precompute_ref_log_probs=True, disable_tqdm=True,
                     dataloader_num_workers=0, beta=0.1, max_length=64)
    train = load_dataset("json", data_files=data_file, split="train", cache_dir=os.path.join(workdir, "cache"))
    kwargs = {"beta": 2.0} if name in ("amapo", "gamma_simpo") else {"beta": 0.1}
    trainer = ApoTrainer(model=model, ref_model=ref, args=args, train_dataset=train, processing_class=tok,
                         loss_name=name, loss_kwargs=kwargs)
    trainer.gather_batch_statistics = gather
    trainer.train()
    results[name] = {"processes": trainer.accelerator.num_processes,
                     "logs": [h for h in trainer.state.log_history if "loss" in h]}
if int(os.environ.get("RANK", "0")) == 0:
    with open(out_path, "w") as f:
        json.dump(results, f)
