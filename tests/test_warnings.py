"""The kit's own calls raise no deprecation: pyproject filters FutureWarning and DeprecationWarning for the rest of
the suite (what third-party code raises by itself), so this test records them while the kit trains, samples and
scores on the smoke model, and fails on any it did not expect. A new transformers or TRL release that deprecates an
argument the kit passes fails here, with the message that says what to use instead."""

import warnings

from apo_utils import policy_training, reward_model
from apo_utils.generation import generate
from apo_utils.lora_run import RunSettings
from apo_utils.models import load_causal_lm

# Raised inside third-party code whatever its caller passes: (category, text the message contains, why it is kept).
THIRD_PARTY = [
    (FutureWarning, "`is_gradient_checkpointing` is deprecated",
     "TRL 1.16 (trl/models/utils.py) and peft read this model property themselves; the kit never does"),
]


def _rows(n=16):
    return [{"prompt": f"Film {i} was", "chosen": " great and lovely", "rejected": " dull and bad", "margin": 1.0}
            for i in range(n)]


def test_training_sampling_and_scoring_raise_no_deprecation(tmp_path):
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        settings = RunSettings(epochs=1, batch_size=8, lr=5e-3, lora_r=4, max_length=64)
        model, tok, _ = policy_training.train_policy("madpo", _rows(), "tiny", tmp_path / "p", settings,
                                                     loss_kwargs={"beta": 0.5}, log=lambda *_: None)
        generate(model, tok, ["Film was"], n_samples=2, max_new_tokens=4, batch_size=2, progress=False)
        rm, rtok, _ = reward_model.train_reward_model(_rows(), "tiny", tmp_path / "r", RunSettings(epochs=1, lora_r=0),
                                                      progress=False, log=lambda *_: None)
        reward_model.reward_margins(rm, rtok, _rows(4))
        load_causal_lm("tiny", seed=0, log=lambda *_: None)
    deprecations = [w for w in seen if issubclass(w.category, (FutureWarning, DeprecationWarning))
                    and not any(issubclass(w.category, c) and text in str(w.message) for c, text, _ in THIRD_PARTY)]
    assert not deprecations, "the kit's calls are deprecated:\n" + "\n".join(
        f"{w.category.__name__} at {w.filename}:{w.lineno}: {w.message}" for w in deprecations)
