"""The `smoke`, `cpu`, `gpu` and `paper` settings in one place, so a learner switches scale with one parameter.

`auto` resolves to $APO_PROFILE when set (CI sets smoke), else `gpu` when CUDA is present, else `cpu`; `paper`
is only ever asked for by name (it takes hours).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field

PROFILES = ("smoke", "cpu", "gpu", "paper")


@dataclass(frozen=True)
class BanditSettings:
    """The Bradley-Terry bandit of notebook 00: a softmax policy over `n_responses` with known rewards."""

    n_responses: int = 300
    n_pairs: int = 2000
    steps: int = 400
    batch_size: int = 64
    seeds: tuple[int, ...] = (0, 1, 2)


@dataclass(frozen=True)
class DataSettings:
    """The sentiment preference pipeline of notebook 01 (and the data every study trains on)."""

    policy: str = "tiny"  # 'tiny', 'gemma-offline', or a hub name (falls back to gemma-offline offline)
    prompt_source: str = "offline"  # 'offline', 'imdb' or 'auto'
    scorer: str = "vader"  # 'vader', 'auto' or a classifier name
    n_prompts: int = 256
    n_samples: int = 4  # continuations per prompt; 'low' quality pairs the best with the worst of them
    max_new_tokens: int = 24
    temperature: float = 1.0
    gen_batch_size: int = 32
    # Bradley-Terry annotator P(a > b) = sigma(k (s_a - s_b)) when VADER is the ground truth: k = 4 on its [-1, 1]
    # score. The hub classifier brings its own, the authors' k = 1 on [-3, 3]: label pairs with scorer.label_scale
    # (ground_truth.make_scorer(..., vader_label_scale=label_scale); ground_truth.py says what 4 is equivalent to).
    label_scale: float = 4.0
    test_fraction: float = 0.25
    rm_epochs: float = 4.0
    rm_batch_size: int = 16
    rm_lr: float = 1e-3
    rm_lora_r: int = 0  # 0: train every weight (tiny model); >0: LoRA rank on a pretrained backbone
    every_pair: bool = False  # all pairs of a prompt's samples (data.make_pairs) instead of one pair a prompt
    high_samples: int | None = None  # every_pair: the high tier pairs a prompt's first h samples (None: all)
    low_extremes: int | None = None  # every_pair: the low tier crosses the m best with the m worst (None: halves)
    trim_vocab: int | None = None  # generate with the vocabulary-trimmed starting policy (keep_first), as 02-05 train
    rm_val_fraction: float = 0.0  # training prompts held out to stop the reward model early (0: no early stopping)
    rm_eval_every: int = 20  # optimizer steps between validation passes
    rm_patience: int = 3  # validation passes without improvement before stopping
    rm_top_layers: int | None = None  # LoRA on the reward model's top layers only, lower layers run once per text


@dataclass(frozen=True)
class PolicySettings:
    """How the study notebooks (02-05) train and evaluate policies: same budget for every method."""

    seeds: tuple[int, ...] = (0, 1, 2)
    epochs: float = 2.0
    batch_size: int = 8
    lr: float = 5e-3
    beta: float = 0.1
    lora_r: int = 8  # LoRA rank on q/k/v/o (the reference is the same model with adapters off)
    max_length: int = 96
    trim_vocab: int | None = None  # keep_first for apo_utils.vocab.trim_vocabulary; None keeps the full vocabulary
    n_eval_prompts: int = 32  # held-out prompts: notebook 01's test prompts, then unused offline openings
    eval_samples: int = 2
    eval_max_new_tokens: int = 24
    eval_batch_size: int = 32
    top_layers: int | None = None  # LoRA on the top layers only, lower layers run once per text (None: every layer)
    train_pairs: int | None = None  # pairs a policy trains on: one draw from 01's tier for every seed (None: all)
    kl_prompts: int | None = None  # KL from the start estimated on the first n held-out prompts' samples (None: all)
    cpu_bf16: bool = False  # on a CPU: train and sample in bfloat16 (env.cpu_bf16_context); a GPU decides by itself
    checkpoints: int | None = None  # reward and KL measured at this many points along training, start and end included
    checkpoint_prompts: int = 64  # held-out prompts sampled at the intermediate points (the end: every prompt)

    def run_key(self) -> dict:
        """What changes one policy run, for its cache key: not the list of seeds, not how many prompts it evaluates
        (the prompts themselves are part of the key)."""
        d = asdict(self)
        for k in ("seeds", "n_eval_prompts", "train_pairs"):  # the pairs themselves are in the key
            del d[k]
        for k in ("checkpoints", "checkpoint_prompts"):  # what is measured along the way, not how it trains
            del d[k]
        for k in ("top_layers", "kl_prompts", "cpu_bf16"):  # unset: the keys runs had before the option existed
            if d[k] in (None, False):
                del d[k]
        return d


TIERS = ("high", "low")  # notebook 01's quality tiers (data.QUALITIES; tests/test_budget.py checks they agree)


def beta_label(scale: float) -> str:
    """'β×3', 'β/3' or 'β': how a setting names a multiple of the profile's beta."""
    if scale == 1:
        return "β"
    return f"β×{scale:g}" if scale > 1 else f"β/{1 / scale:.3g}"


def beta_sweep_jobs(tier: str, scales, seeds, methods, **fields) -> list[dict]:
    """The runs of a beta sweep (02b, 03b, 04b, 05c): every method at each multiple of beta but 1 (beta itself is the
    main notebook's runs), on every seed. Each names its 'tier' (the main notebook's setting) and 'beta_scale'; its
    setting names both, e.g. 'high, β×3', so tables keep the betas apart."""
    return [{"setting": f"{tier}, {beta_label(k)}", "tier": tier, **fields, "beta_scale": k, "seed": s, "method": m}
            for k in scales if k != 1 for s in seeds for m in methods]


def _first(seeds, n: int | None) -> tuple:
    """The seeds runs outside a headline comparison use: the first n (None: all)."""
    return tuple(seeds[:n])


@dataclass(frozen=True)
class MadpoSettings:
    """Notebook 02: MADPO against DPO (on the data's labels and on the reward model's), beta-DPO, every seed, each
    policy measured along training (a reward-KL frontier). Notebook 02b: DPO and MADPO at other betas, the other
    tier, IPO and MADPO's variants, with fewer seeds."""

    tiers: tuple[str, ...] = TIERS  # 02's headline tiers (02b runs the headline methods on the others)
    headline: tuple[str, ...] = ("dpo", "dpo_rm_labels", "beta_dpo", "madpo")  # 02, every seed
    seeds: int | None = None  # 02 and 02b train seeds 0..n-1 (None: PolicySettings.seeds)
    variant_quality: str = "high"  # the tier of 02b's beta sweep, MADPO's c_max 2 point, its ablation and IPO
    ipo_both_tiers: bool = True  # IPO on both tiers (False: on the variant tier only)
    test_pairs: int = 600  # held-out pairs of both tiers ranked, turned to agree with the truth (0: no ranking)
    extra_seeds: int | None = None  # 02b's IPO, variants and other tiers: the first n seeds (None: every seed)
    sweep_seeds: int | None = None  # 02b's beta sweep: the first n seeds (None: every seed)
    other_tiers: bool = True  # 02b: the headline methods on the tiers 02 leaves out, with extra_seeds
    ablation: bool = True  # MADPO amplification-only / dampening-only runs
    beta_scales: tuple[float, ...] = (1 / 3, 1.0, 3.0)  # 02b: DPO and MADPO also at these multiples of beta
    budgets: int = 2  # matched-KL budgets each reward comparison is made at
    checkpoints: int | None = 5  # reward and KL along training (PolicySettings.checkpoints) for this study
    train_pairs: int | None = None  # pairs a policy trains on in this study (None: PolicySettings.train_pairs)

    variants = ("madpo_c2", "madpo_amplify", "madpo_dampen")
    swept = ("dpo", "madpo")  # the methods whose frontier spans several betas

    def policy_changes(self) -> dict:
        """PolicySettings this study sets otherwise (the record stores the result)."""
        return {**({"checkpoints": self.checkpoints} if self.checkpoints else {}),
                **({"seeds": tuple(range(self.seeds))} if self.seeds else {}),
                **({"train_pairs": self.train_pairs} if self.train_pairs else {})}

    def jobs(self, seeds) -> list[dict]:
        """Notebook 02's runs, in order: {'setting', 'seed', 'method'}, the headline methods on the headline tiers."""
        return [{"setting": q, "seed": s, "method": m} for q in self.tiers for s in seeds for m in self.headline]

    def companion_jobs(self, seeds) -> list[dict]:
        """Notebook 02b's runs, in order: the beta sweep (`beta_sweep_jobs`), then the other tiers, IPO and the
        variants."""
        extra, v = _first(seeds, self.extra_seeds), self.variant_quality
        jobs = beta_sweep_jobs(v, self.beta_scales, _first(seeds, self.sweep_seeds), self.swept)
        jobs += [{"setting": q, "seed": s, "method": m} for q in TIERS if q not in self.tiers and self.other_tiers
                 for s in extra for m in self.headline]
        jobs += [{"setting": q, "seed": s, "method": "ipo"}
                 for q in (TIERS if self.ipo_both_tiers else (v,)) for s in extra]
        if self.ablation:
            jobs += [{"setting": v, "seed": s, "method": m} for s in extra for m in self.variants]
        return jobs


@dataclass(frozen=True)
class NoiseSettings:
    """Notebooks 03 and 03b. 03: SimPO against gamma-SimPO on labels with some flipped, every seed at the headline
    rate, each policy measured along training (a reward-KL frontier); other rates and DPO / gamma-DPO with fewer
    seeds. 03b: SimPO and gamma-SimPO at other multiples of beta, at the headline rate, every seed."""

    quality: str = "low"  # the tier whose labels are flipped (its labels agree with the truth most)
    rates: tuple[float, ...] = (0.0, 0.2, 0.4)  # SimPO and gamma-SimPO
    headline_rate: float = 0.2  # the headline comparison's rate (every seed): flips matter, the ceiling does not
    dpo_rates: tuple[float, ...] = (0.2,)  # DPO and gamma-DPO, with `extra_seeds` seeds
    tau: float = 5.0  # gamma-SimPO's tau: gamma0 / tau = 1 (gamma0 = 5), so margins may spread up to e^1 (at tau 20,
    #                   the authors' Gemma-2-9B value, the spread is capped near e^0.25 and the margins barely move)
    test_pairs: int = 600  # clean held-out pairs ranked (a fixed sample of both tiers')
    seeds: int | None = None  # the study's seeds 0..n-1 (None: PolicySettings.seeds)
    extra_seeds: int | None = None  # the other rates and DPO / gamma-DPO: the first n seeds (None: every seed)
    budgets: int = 2  # matched-KL budgets each reward comparison is made at
    checkpoints: int | None = 5  # reward and KL along training (PolicySettings.checkpoints) for this study
    train_pairs: int | None = None  # pairs a policy trains on in this study (None: PolicySettings.train_pairs)
    beta_scales: tuple[float, ...] = (1 / 3, 1.0, 3.0)  # 03b: SimPO and gamma-SimPO also at these multiples of beta

    swept = ("simpo", "gamma_simpo")  # 03b: the headline comparison, each side's frontier over several betas

    def policy_changes(self) -> dict:
        """PolicySettings this study sets otherwise (the record stores the result)."""
        return {**({"checkpoints": self.checkpoints} if self.checkpoints else {}),
                **({"seeds": tuple(range(self.seeds))} if self.seeds else {}),
                **({"train_pairs": self.train_pairs} if self.train_pairs else {})}

    @staticmethod
    def setting(rate: float) -> str:
        return f"{rate:.0%} flipped"

    def beta_jobs(self, seeds) -> list[dict]:
        """Notebook 03b's runs: the beta sweep of the swept methods at the headline rate, every seed (a verdict on
        each side's best beta is then paired by seed)."""
        return beta_sweep_jobs(self.setting(self.headline_rate), self.beta_scales, seeds, self.swept,
                               rate=self.headline_rate)

    def jobs(self, seeds) -> list[dict]:
        """{'setting', 'rate', 'seed', 'method'} for every run of the notebook, in order."""
        def seeds_at(rate):
            return tuple(seeds) if rate == self.headline_rate else _first(seeds, self.extra_seeds)
        jobs = [{"setting": self.setting(r), "rate": r, "seed": s, "method": m}
                for r in self.rates for s in seeds_at(r) for m in ("simpo", "gamma_simpo")]
        jobs += [{"setting": self.setting(r), "rate": r, "seed": s, "method": m}
                 for r in self.dpo_rates for s in _first(seeds, self.extra_seeds) for m in ("dpo", "gamma_dpo")]
        return jobs


@dataclass(frozen=True)
class RankingSettings:
    """Notebooks 04 and 04b. 04: ranking accuracy along training, against the labels and against the truth, where
    each loss spends its gradient, and each policy's reward and KL along training (a reward-KL frontier). 04b: DPO
    and AMaPO at other multiples of beta, every seed, reward and KL along training only."""

    quality: str = "high"  # subtle margins, many misranked pairs, about a quarter of the labels wrong (04 measures it)
    epochs: float = 2.0  # passes over the data, so that over-fitting has time to show (replaces PolicySettings')
    methods: tuple[str, ...] = ("dpo", "ipo", "simpo", "amapo")
    track_every: int = 4  # optimizer steps between measurements during training (reward and KL too, at `checkpoints`)
    track_train_pairs: int = 48  # training pairs measured during training
    track_test_pairs: int = 48  # held-out pairs measured during training (all of them at the end)
    test_pairs: int = 700  # held-out pairs of the tier ranked at the end (a fixed sample)
    seeds: int | None = None  # train seeds 0..n-1 (None: PolicySettings.seeds)
    budgets: int = 2  # matched-KL budgets each reward comparison is made at
    checkpoints: int | None = 5  # measure reward and KL along training: at every tracked step, at least this many
    train_pairs: int | None = None  # pairs a policy trains on (None: PolicySettings.train_pairs)
    beta_scales: tuple[float, ...] = (1 / 3, 1.0, 3.0)  # 04b: DPO and AMaPO also at these multiples of beta

    swept = ("dpo", "amapo")  # 04b: the method under test and DPO, each side's frontier over several betas

    def policy_changes(self) -> dict:
        """PolicySettings this study sets otherwise (the record stores the result)."""
        return {"epochs": self.epochs, **({"checkpoints": self.checkpoints} if self.checkpoints else {}),
                **({"seeds": tuple(range(self.seeds))} if self.seeds else {}),
                **({"train_pairs": self.train_pairs} if self.train_pairs else {})}

    def jobs(self, seeds) -> list[dict]:
        return [{"setting": self.quality, "seed": s, "method": m} for s in seeds for m in self.methods]

    def beta_jobs(self, seeds) -> list[dict]:
        """Notebook 04b's runs: the swept methods at every other multiple of beta, on every seed of 04's (a verdict on
        each side's best beta is then paired by seed)."""
        return beta_sweep_jobs(self.quality, self.beta_scales, seeds, self.swept)


@dataclass(frozen=True)
class LongTrainingSettings:
    """Notebook 04c: DPO, SimPO and AMaPO trained for many passes over a few pairs whose labels are mostly right,
    ranking measured along training against the labels and against the truth, on training and held-out pairs: where
    the over-fitting AMaPO claims to cure can show (notebook 04's pairs are too hard for held-out ranking to be
    learnt, so there is none to lose)."""

    quality: str = "low"  # large margins: held-out ranking can be learnt, so it can also be unlearnt
    epochs: float = 6.0  # every pair seen six times: long enough to fit every label, the wrong ones included
    methods: tuple[str, ...] = ("dpo", "simpo", "amapo")
    track_every: int = 4  # optimizer steps between measurements of the two probes
    track_train_pairs: int = 48  # training pairs measured during training
    track_test_pairs: int = 48  # held-out pairs measured during training (all of them at the end)
    test_pairs: int = 700  # held-out pairs of the tier ranked at the end (a fixed sample)
    seeds: int | None = None  # train seeds 0..n-1 (None: PolicySettings.seeds)
    train_pairs: int | None = None  # pairs a policy trains on (None: PolicySettings.train_pairs)
    eval_prompts: int | None = None  # held-out prompts for the final reward and KL, a side measure here (None: all)

    def policy_changes(self) -> dict:
        """PolicySettings this study sets otherwise (the record stores the result): no reward along training."""
        return {"epochs": self.epochs, "checkpoints": None,
                **({"seeds": tuple(range(self.seeds))} if self.seeds else {}),
                **({"train_pairs": self.train_pairs} if self.train_pairs else {}),
                **({"n_eval_prompts": self.eval_prompts} if self.eval_prompts else {})}

    def jobs(self, seeds) -> list[dict]:
        return [{"setting": self.quality, "seed": s, "method": m} for s in seeds for m in self.methods]


@dataclass(frozen=True)
class MmpoSettings:
    """Notebooks 05, 05b and 05c. 05: policies of DPO (on the labels as given, truth-corrected, or the reward
    model's) and MMPO (true or estimated margins), each measured along training (a reward-KL frontier), every seed.
    05b: reward models on hard labels against MMPO's soft targets, and the gamma_bt sweep. 05c: DPO and MMPO at
    other multiples of beta, every seed."""

    quality: str = "high"
    gamma_bt: float = 9.9  # the authors' 2.2 (UltraFeedback's 1-10 scores) x 4.5 (VADER's range is 2, not 9)
    test_pairs: int = 600  # held-out pairs of both tiers measured (a fixed sample)
    bt_scales: tuple[float, ...] = (1.35, 4.95, 9.9)  # gamma_bt tried on the reward model (with the label scale)
    policies: tuple[str, ...] = ("dpo", "dpo_truth_labels", "dpo_rm_labels", "mmpo", "mmpo_estimated")  # mmpo_runs
    seeds: int | None = None  # policies and reward models train seeds 0..n-1 (None: PolicySettings.seeds)
    rm_seeds: int | None = None  # reward models on hard labels and true margins, and the γ_bt sweep: the first n seeds
    extra_seeds: int | None = None  # reward models on estimated margins: the first n seeds (None: all)
    budgets: int = 2  # matched-KL budgets each reward comparison is made at
    checkpoints: int | None = 5  # reward and KL along training (PolicySettings.checkpoints) for this study
    train_pairs: int | None = None  # pairs a policy and a reward model train on (None: PolicySettings.train_pairs)
    beta_scales: tuple[float, ...] = (1 / 3, 1.0, 3.0)  # 05c: DPO and MMPO also at these multiples of beta

    swept = ("dpo", "mmpo")  # 05c: the paper's comparison, each side's frontier over several betas

    def policy_changes(self) -> dict:
        """PolicySettings this study sets otherwise (the record stores the result)."""
        return {**({"checkpoints": self.checkpoints} if self.checkpoints else {}),
                **({"seeds": tuple(range(self.seeds))} if self.seeds else {}),
                **({"train_pairs": self.train_pairs} if self.train_pairs else {})}

    def beta_jobs(self, seeds) -> list[dict]:
        """Notebook 05c's runs: the beta sweep of the swept methods on every seed of 05's (a verdict on each side's
        best beta is then paired by seed)."""
        return beta_sweep_jobs("policy", self.beta_scales, seeds, self.swept)

    def reward_model_jobs(self, seeds) -> list[dict]:
        jobs = [{"setting": "reward model", "seed": s, "method": m} for s in _first(seeds, self.rm_seeds)
                for m in ("bradley_terry", "mmpo")]
        return jobs + [{"setting": "reward model", "seed": s, "method": "mmpo_estimated"}
                       for s in _first(seeds, self.extra_seeds)]

    def sweep_jobs(self, seeds, label_scale: float) -> list[dict]:
        """The gamma_bt sweep on every seed of the headline's reward models, so that each value is compared with the
        headline's (already among the reward models) paired by seed, as the headline is compared with hard labels."""
        scales = sorted((set(self.bt_scales) | {float(label_scale)}) - {self.gamma_bt})
        return [{"setting": "γ_bt sweep", "seed": s, "method": "mmpo", "gamma_bt": g}
                for s in _first(seeds, self.rm_seeds) for g in scales]

    def policy_jobs(self, seeds) -> list[dict]:
        """Every policy method on every seed: each is a frontier a matched-KL verdict is read from."""
        return [{"setting": "policy", "seed": s, "method": m} for s in seeds for m in self.policies]


# Which Profile field holds each study notebook's own settings.
STUDY_SECTIONS = {"02_madpo_imdb": "madpo", "02b_madpo_sensitivity": "madpo", "03_gamma_po_noise": "noise",
                  "03b_gamma_po_beta_sweep": "noise", "04_amapo_ranking": "ranking",
                  "04b_amapo_beta_sweep": "ranking", "04c_amapo_long_training": "long_training",
                  "05_mmpo_margins": "mmpo", "05b_mmpo_reward_models": "mmpo",
                  "05c_mmpo_beta_sweep": "mmpo"}


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    bandit: BanditSettings = field(default_factory=BanditSettings)
    data: DataSettings = field(default_factory=DataSettings)
    policy: PolicySettings = field(default_factory=PolicySettings)
    madpo: MadpoSettings = field(default_factory=MadpoSettings)
    noise: NoiseSettings = field(default_factory=NoiseSettings)
    ranking: RankingSettings = field(default_factory=RankingSettings)
    long_training: LongTrainingSettings = field(default_factory=LongTrainingSettings)
    mmpo: MmpoSettings = field(default_factory=MmpoSettings)

    def as_dict(self) -> dict:
        return asdict(self)

    def study_settings(self, study: str):
        """The settings of one study notebook (02-05), e.g. `profiles.get("cpu").study_settings("02_madpo_imdb")`."""
        if study not in STUDY_SECTIONS:
            raise ValueError(f"{study!r} has no settings of its own; studies that do: {', '.join(STUDY_SECTIONS)}")
        return getattr(self, STUDY_SECTIONS[study])


_SETTINGS = {
    # smoke: every step of every notebook runs, 02's and 05's frontiers included (reward and KL at 3 points along
    # training on 8 prompts; DPO and MADPO, and DPO and MMPO, also at half beta; 05 on 2 seeds), on the tiny random
    # model.
    "smoke": Profile("smoke", "CI check: tiny random model, a few dozen prompts, minutes on 2 CPU cores",
                     bandit=BanditSettings(n_responses=200, n_pairs=1000, steps=150, batch_size=64, seeds=(0, 1, 2)),
                     data=DataSettings(rm_val_fraction=0.2, rm_eval_every=5),
                     policy=PolicySettings(checkpoint_prompts=8),
                     madpo=MadpoSettings(beta_scales=(0.5, 1.0), checkpoints=3, sweep_seeds=2, extra_seeds=1),
                     noise=NoiseSettings(rates=(0.0, 0.2), checkpoints=3, seeds=2, extra_seeds=1, beta_scales=(0.5, 1.0)),
                     ranking=RankingSettings(checkpoints=3, beta_scales=(0.5, 1.0)),
                     long_training=LongTrainingSettings(epochs=3.0),
                     mmpo=MmpoSettings(checkpoints=3, seeds=2, extra_seeds=1, bt_scales=(1.35, 9.9), beta_scales=(0.5, 1.0))),
    "cpu": Profile("cpu", "laptop: pretrained Gemma-3-270M offline, a few hundred pairs, <= 60 min a study",
                   bandit=BanditSettings(n_responses=300, n_pairs=3000, steps=600, batch_size=64,
                                         seeds=(0, 1, 2, 3, 4)),
                   # 01 on cpu: 700 prompts x 8 samples from the trimmed starting policy. High tier: every pair of
                   # a prompt's first 5 samples (10); low tier: its 2 best x its 2 worst of the 8 (4, large
                   # margins, as the paper's policy-vs-review pairs). 560 training prompts give 5,600 high /
                   # 2,240 low pairs, 140 held-out ones 1,400 / 560. The reward model trains LoRA on its top 3
                   # layers (lower layers once per text) with early stopping.
                   data=DataSettings(policy="gemma-offline", prompt_source="offline", scorer="vader", n_prompts=700,
                                     n_samples=8, max_new_tokens=32, gen_batch_size=128, test_fraction=0.2,
                                     every_pair=True, high_samples=5, low_extremes=2, trim_vocab=8192,
                                     rm_epochs=2.5, rm_batch_size=16, rm_lr=5e-4,
                                     rm_lora_r=16, rm_val_fraction=0.1, rm_eval_every=25, rm_patience=6,
                                     rm_top_layers=3),
                   # 02-05 on cpu: 1,000 of 01's pairs a policy (one draw a tier), one epoch, LoRA on the top 3
                   # layers (frozen layers once per text), training and sampling in bf16 (AMX), 256 held-out
                   # prompts x 2 samples, KL from the first 64 prompts' samples.
                   policy=PolicySettings(seeds=(0, 1, 2), epochs=1.0, batch_size=8, lr=5e-4, lora_r=16,
                                         max_length=96, trim_vocab=8192, n_eval_prompts=256, eval_samples=2,
                                         eval_max_new_tokens=32, eval_batch_size=128, top_layers=3,
                                         train_pairs=1000, kl_prompts=64, cpu_bf16=True, checkpoint_prompts=32),
                   # 02: the headline on the high tier (the paper's largest gain; the low tier saturates VADER at
                   # 0.97), 5 seeds, DPO, DPO on the reward model's labels and MADPO, each measured at 5 points
                   # along training (the start kept once a seed, 3 checkpoints on 32 prompts, the end on all 256).
                   # 500 pairs a policy (63 steps) and no held-out ranking. 02 also trains beta-DPO (the paper's main results'
                   # baseline): 20 runs, 33 to 50 min measured by machine (2.5 min a run on the slowest AMX machine seen; on a CPU
                   # without bf16 units, fp32 at 1.5 s a step, about 3.5 min a run, so over the hour there). 02b: DPO
                   # and MADPO at beta/3 and 3 beta on the same 5 seeds (a verdict on the best of three betas takes
                   # every seed), IPO and MADPO's variants on 1: 24 runs, 42 to 43 min measured.
                   madpo=MadpoSettings(tiers=("high",), seeds=5, train_pairs=500, test_pairs=0, other_tiers=False,
                                       ipo_both_tiers=False, extra_seeds=1),
                   # 03: SimPO and gamma-SimPO (gamma0 / tau = 1) at 20 % flips and with no flips, 5 seeds each;
                   # 500 low-tier pairs a policy, each measured at 5 points (20 runs, 44 min measured). DPO and
                   # gamma-DPO (at DPO's beta the margins shift its logit by at most 0.09) run on gpu only. 03b:
                   # SimPO and gamma-SimPO at beta/3 and 3 beta at 20 % flips on the same 5 seeds (20 runs).
                   noise=NoiseSettings(rates=(0.0, 0.2), seeds=5, train_pairs=500, dpo_rates=()),
                   # 04: DPO, SimPO and AMaPO on 5 seeds, 300 high-tier pairs for 2 epochs (76 steps: a pair is
                   # seen twice, so fitting its label can outrun learning the truth); ranking, reward and KL measured
                   # together every 19 steps (5 points, the start and the end included). 400 pairs, 200 tracked and
                   # 700 final held-out pairs took about 300 s a policy (measured), 80 min in all: over the hour.
                   # 04b: DPO and AMaPO at beta/3 and 3 beta on the same 5 seeds, reward and KL only (20 runs, 35 min
                   # measured).
                   ranking=RankingSettings(epochs=2.0, track_every=19, track_train_pairs=64, track_test_pairs=100,
                                           methods=("dpo", "simpo", "amapo"), seeds=5, train_pairs=300,
                                           test_pairs=500),
                   # 04c: DPO, SimPO and AMaPO on 5 seeds, 200 low-tier pairs for 6 epochs (150 steps), both probes
                   # measured every epoch; reward and KL at the end only, on 64 prompts (15 runs, 45 min measured). A
                   # one-seed trial of 300 pairs for 6 epochs took 250-315 s a policy: over the hour for 15.
                   long_training=LongTrainingSettings(epochs=6.0, track_every=25, track_train_pairs=128,
                                                      track_test_pairs=200, seeds=5, train_pairs=200, test_pairs=500,
                                                      eval_prompts=64),
                   # 05: 500 pairs a policy (as 02), measured at 5 points along training: DPO on the labels as given
                   # and truth-corrected, MMPO on true and estimated margins, 5 seeds (20 runs of about 2.5 min). DPO
                   # on the reward model's labels is 02's. 05b: reward models on the same 500 pairs, hard labels and
                   # soft targets from true and estimated margins on 5 seeds (about 70 s each), and the gamma_bt
                   # sweep (1.35 and the annotator's scale, each paired by seed with 9.9) on the same 5 seeds. 05c:
                   # DPO and MMPO at beta/3 and 3 beta on the same 5 seeds (20 runs; beta itself is 05's).
                   mmpo=MmpoSettings(policies=("dpo", "dpo_truth_labels", "mmpo", "mmpo_estimated"), seeds=5,
                                     train_pairs=500, bt_scales=(1.35, 9.9))),
    # gpu: one free Colab T4 (or any one GPU), each notebook <= 60 min. No T4 was lent to this project, so the size
    # comes from the MADPO authors' T4 timings of this very set-up (Gemma-3-270M, LoRA r 16, float32 as
    # env.mixed_precision picks for Gemma 3 on a T4): IPO trained 10,000 pairs of <= 196 tokens in 11:04 an epoch
    # (66 ms a pair; MADPO 13:09 with its reward model's forward passes), reference log-probs 16.4 ms a pair.
    # Scaled by tokens (20 prompt + 48 new = 68 of their 196): 23 ms a pair and epoch here. 1,000 prompts give 750
    # training pairs a tier, so one policy of 2 epochs costs 750 x (2 x 23 + 6) ms = 39 s, plus 15 s of set-up and
    # ~24 s sampling 512 evaluation continuations (0.25 s a decoding step, assumed). Runs = methods x (tiers or
    # noise rates) x seeds: 02 4 x 2 x 3 = 24 runs, 34 min with its held-out pairs; 03 2 x 3 x 3 + 2 x 3 = 24, each
    # measured at 5 points, 53 min; 04 4 x 3 = 12, 17 min; 05 12 reward
    # models + 15 policies (5 methods x 3 seeds, each measured at 5 points), 45 min; 01 5 min. `python -m apo_utils.budget` recomputes these (apo_utils/budget.py, tests/test_budget.py).
    "gpu": Profile("gpu", "one GPU (a free Colab T4: each notebook <= 60 min): the hub's Gemma-3-270M, IMDB and the "
                          "authors' classifier when reachable, else the offline stand-ins",
                   bandit=BanditSettings(n_responses=300, n_pairs=3000, steps=600, batch_size=64,
                                         seeds=(0, 1, 2, 3, 4)),
                   data=DataSettings(policy="google/gemma-3-270m", prompt_source="auto", scorer="auto",
                                     n_prompts=1000, n_samples=4, max_new_tokens=48, gen_batch_size=256,
                                     rm_epochs=2.0, rm_batch_size=32, rm_lr=2e-4, rm_lora_r=16),
                   policy=PolicySettings(seeds=(0, 1, 2), epochs=2.0, batch_size=32, lr=2e-4, lora_r=16,
                                         max_length=128, trim_vocab=None, n_eval_prompts=256, eval_samples=2,
                                         eval_max_new_tokens=48, eval_batch_size=256),
                   madpo=MadpoSettings(ablation=False),
                   noise=NoiseSettings(rates=(0.0, 0.2, 0.4)),
                   long_training=LongTrainingSettings(track_every=24)),
    # paper: the MADPO authors' scale, for a user with hours (apo_utils/budget.py: 3-9 h a notebook on a T4, less on a
    # GPU with native bf16). IMDB (train split) openings of 20 tokens, 10,000 training and 2,000 held-out pairs a
    # tier, responses up to 176 new tokens (196 with the prompt), 2 epochs at lr 1e-5, one seed, 2,000 evaluation
    # continuations; reward model at lr 1e-5, validated every 40 steps with patience 3 (01), at most 6 epochs: the
    # authors allowed 12 and stopped after ~3,500 steps of 16, 5.6 epochs (05 trains its reward models without
    # early stopping, so the cap is what they cost there). 03 uses three noise rates, 04 measures every 40 steps,
    # 05 sweeps three gamma_bt. Differences from the authors: 4 samples a prompt (they took 2, and the human review
    # as the Low tier's rejected response; the kit's Low tier is the best against the worst sample), batches of 16
    # without their 2-step accumulation, and the reward model's validation pairs come from held-out training
    # prompts. Needs the hub: offline, IMDB is replaced by the 1,000 offline openings, too few for 12,000 prompts,
    # and notebook 01 stops with that message.
    "paper": Profile("paper", "the MADPO authors' scale (10,000 pairs, 2 epochs, up to 196 tokens): hours on one GPU",
                     bandit=BanditSettings(n_responses=300, n_pairs=3000, steps=600, batch_size=64,
                                           seeds=(0, 1, 2, 3, 4)),
                     data=DataSettings(policy="google/gemma-3-270m", prompt_source="imdb", scorer="auto",
                                       n_prompts=12_000, n_samples=4, max_new_tokens=176, gen_batch_size=256,
                                       test_fraction=2_000 / 12_000, rm_epochs=6.0, rm_batch_size=16, rm_lr=1e-5,
                                       rm_lora_r=16, rm_val_fraction=0.1, rm_eval_every=40, rm_patience=3),
                     policy=PolicySettings(seeds=(0,), epochs=2.0, batch_size=16, lr=1e-5, beta=0.1, lora_r=16,
                                           max_length=196, trim_vocab=None, n_eval_prompts=2_000, eval_samples=1,
                                           eval_max_new_tokens=176, eval_batch_size=256),
                     madpo=MadpoSettings(ablation=False),
                     noise=NoiseSettings(rates=(0.0, 0.2, 0.4)),
                     ranking=RankingSettings(track_every=40),
                     long_training=LongTrainingSettings(track_every=40)),
}


def resolve(profile: str = "auto") -> str:
    """Turn 'auto' into a concrete profile name; reject unknown names with the list of valid ones."""
    if profile == "auto":
        env = os.environ.get("APO_PROFILE")
        if env:
            profile = env
        else:
            try:
                import torch

                profile = "gpu" if torch.cuda.is_available() else "cpu"
            except ImportError:
                profile = "cpu"
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)} or 'auto'")
    return profile


def get(profile: str = "auto") -> Profile:
    return _SETTINGS[resolve(profile)]
