"""Ground-truth sentiment scorers with one interface: `scorer(texts) -> list[float]`, higher = more positive.

Each scorer carries the scale its annotator works on, `label_scale`: a pair is labelled "a beats b" with
probability sigma(label_scale * (s_a - s_b)) (Gumbel noise of scale 1/label_scale on the scores). The two go
together because a score's units decide how noisy a given label scale is:

* the hub classifier (`cardiffnlp/twitter-roberta-base-sentiment-latest`, the MADPO authors' ground truth):
  score = (P(positive) - 0.5) * 6 in [-3, 3], Gumbel noise of scale 1 on that scale, so label_scale 1.0,
  exactly as the authors (their `get_ground_truth_rewards` and `determine_preference`, scale 1.0);
* VADER offline (`vaderSentiment`, a lexicon and rules inside the package; no download, deterministic, about
  10k short texts a second on one core): its compound score in [-1, 1], with the profile's label_scale, 4.0
  by default. What that is equivalent to is an assumption, not a measurement on the same texts: matching
  the ranges ([-1, 1] against [-3, 3]) gives 3.0; matching the spread of scores - the authors' policies'
  per-sample SD 1.4-2.1 on [-3, 3] (their notebooks) against VADER's SD 0.42 on the cpu profile's 5,251
  Gemma samples (notebook 01) - gives 3.3-5.0. 4.0 lies in both brackets; the classifier itself cannot be
  run here, so nobody has scored the same texts with both.
"""

from __future__ import annotations

from tqdm.auto import tqdm

from . import hub

# The MADPO paper's ground truth (three classes: negative, neutral, positive).
DEFAULT_CLASSIFIER = "cardiffnlp/twitter-roberta-base-sentiment-latest"
CLASSIFIER_LABEL_SCALE = 1.0  # the authors' Gumbel noise of scale 1 on the [-3, 3] score
VADER_LABEL_SCALE = 4.0  # the kit's default for VADER's [-1, 1] score (module docstring: why)


def classifier_score(p_positive):
    """The MADPO authors' ground truth from a classifier's P(positive): (p - 0.5) * 6, in [-3, 3]."""
    return (p_positive - 0.5) * 6.0


class VaderScorer:
    """VADER's compound polarity, batched with a progress bar."""

    name = "vader"
    # Also the cache key of every score computed with it: keep it unchanged, or every cached score is recomputed.
    description = "VADER compound sentiment score in [-1, 1] (vaderSentiment, offline)"

    def __init__(self, label_scale: float = VADER_LABEL_SCALE):
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        if not (isinstance(label_scale, (int, float)) and label_scale > 0):
            raise ValueError(f"label_scale must be a number > 0, got {label_scale!r}")
        self.label_scale = float(label_scale)
        self.provenance = {"scorer": self.description, "label_scale": self.label_scale}
        self._analyzer = SentimentIntensityAnalyzer()

    def __call__(self, texts, batch_size: int = 256, progress: bool = True) -> list[float]:
        if isinstance(texts, str):
            raise ValueError("texts must be a list of strings, not one string")
        out = []
        for i in tqdm(range(0, len(texts), batch_size), desc="scoring (VADER)", disable=not progress,
                      total=(len(texts) + batch_size - 1) // batch_size):
            for t in texts[i : i + batch_size]:
                if not isinstance(t, str):
                    raise ValueError(f"texts[{len(out)}] is {type(t).__name__}, expected a string")
                out.append(float(self._analyzer.polarity_scores(t)["compound"]))
        return out


def _classifier_folder(name: str):
    """(folder, provenance source, revision): a local folder as it is, a hub name fetched (HubUnavailable if not)."""
    from pathlib import Path

    if Path(name).is_dir():
        return Path(name), f"local folder {Path(name).name}", None
    folder = hub.fetch(name)
    return folder, "Hugging Face hub", hub.revision_of(folder)


class ClassifierScorer:
    """A sentiment classifier from the hub (or a local folder): score = (P(positive) - 0.5) * 6, in [-3, 3].

    The positive class is read from the model's `id2label` (two- or three-class heads; unnamed heads take the
    last class as positive). Safetensors weights only: if the repository's main branch has none,
    transformers is asked for its safetensors conversion (`use_safetensors=True`), never for pickled weights.
    """

    label_scale = CLASSIFIER_LABEL_SCALE

    def __init__(self, name: str, batch_size: int = 32, device: str | None = None):
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        folder, source, revision = _classifier_folder(name)
        self.name = name
        self.description = f"{name}: (P(positive) - 0.5) x 6 in [-3, 3] (the MADPO authors' ground truth)"
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        has_safetensors = any(folder.glob("*.safetensors")) or any(folder.glob("*.safetensors.index.json"))
        try:
            self.model = AutoModelForSequenceClassification.from_pretrained(
                folder if has_safetensors else name, use_safetensors=True).eval()
        except (OSError, ValueError) as e:
            raise hub.explain(e, name) from e
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model.to(self.device)
        labels = {int(i): str(v).lower() for i, v in self.model.config.id2label.items()}
        generic_pos = {2: "label_1", 3: "label_2"}.get(len(labels))  # unnamed heads: last class is positive
        pos = [i for i, v in labels.items() if v.startswith("pos") or v == generic_pos]
        if len(pos) != 1:
            raise ValueError(f"cannot tell which class of {name} is positive from its labels {labels}")
        self.pos = pos[0]
        self.batch_size = batch_size
        self.provenance = {"scorer": self.description, "scorer_requested": name, "scorer_source": source,
                           "scorer_revision": revision, "label_scale": self.label_scale,
                           "scorer_positive_class": labels[self.pos]}

    def __call__(self, texts, batch_size: int | None = None, progress: bool = True) -> list[float]:
        import torch

        if isinstance(texts, str):
            raise ValueError("texts must be a list of strings, not one string")
        bs = batch_size or self.batch_size
        out = []
        for i in tqdm(range(0, len(texts), bs), desc=f"scoring ({self.name})", disable=not progress):
            enc = self.tokenizer(list(texts[i : i + bs]), return_tensors="pt", padding=True, truncation=True,
                                 max_length=512).to(self.device)
            with torch.no_grad():
                p = self.model(**enc).logits.float().softmax(-1)
            out.extend(classifier_score(p[:, self.pos]).tolist())
        return out


def make_scorer(name: str = "auto", log=print, vader_label_scale: float = VADER_LABEL_SCALE):
    """'vader', 'auto' (the authors' classifier from the hub, else VADER), or a classifier name or folder.

    With 'auto' a failed fetch (no network, gated, not found, time-out, rate limit) is said with what to do,
    and VADER is used instead; `scorer.provenance` (keys prefixed `scorer_`, so it merges flat with the
    model's and the prompts' provenance) records what was asked for and why it was replaced.
    A classifier asked for by name is not replaced: its failure is raised (hub.HubUnavailable).
    `vader_label_scale`: VADER's annotator scale (the profile's `label_scale`); the classifier's is the
    authors' 1.0. Pairs are labelled with `scorer.label_scale`.
    """
    if name == "vader":
        scorer = VaderScorer(vader_label_scale)
    elif name == "auto":
        try:
            scorer = ClassifierScorer(DEFAULT_CLASSIFIER)
        except hub.HubUnavailable as failure:
            scorer = VaderScorer(vader_label_scale)
            scorer.provenance = {**scorer.provenance, **failure.record("scorer_"),
                                 "scorer_fallback": f"{failure.message}. Using instead: VADER, offline."}
            log(scorer.provenance["scorer_fallback"])
    else:
        scorer = ClassifierScorer(name)
    log(f"ground-truth scorer: {scorer.description}; annotator label_scale {scorer.label_scale:g}")
    return scorer
