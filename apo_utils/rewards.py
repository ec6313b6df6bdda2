"""Ground-truth sentiment scorers with one interface: `scorer(texts) -> list[float]`, higher = more positive.

VADER (`vaderSentiment`, a lexicon and rules shipped inside the package) is the offline ground truth:
no download, deterministic, about 10k short texts a second on one core. Its compound score lies in
[-1, 1].
"""

from __future__ import annotations

from tqdm.auto import tqdm

from . import env


class VaderScorer:
    """VADER's compound polarity, batched with a progress bar."""

    name = "vader"
    description = "VADER compound sentiment score in [-1, 1] (vaderSentiment, offline)"

    def __init__(self):
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

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


class ClassifierScorer:
    """A sentiment classifier from the hub (or a local folder): score = P(positive) - P(negative), in [-1, 1].

    Works for two-class (negative/positive) and three-class (negative/neutral/positive) heads, read
    from the model's `id2label`; the neutral mass counts as 0.
    """

    def __init__(self, name: str, batch_size: int = 32, device: str | None = None):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.name = name
        self.description = f"{name}: P(positive) - P(negative)"
        self.tokenizer = AutoTokenizer.from_pretrained(name)
        self.model = AutoModelForSequenceClassification.from_pretrained(name).eval()
        self.device = device or ("cuda" if __import__("torch").cuda.is_available() else "cpu")
        self.model.to(self.device)
        labels = {int(i): str(v).lower() for i, v in self.model.config.id2label.items()}
        generic_pos = {2: "label_1", 3: "label_2"}.get(len(labels))  # unnamed heads: last class is positive
        self.pos = [i for i, v in labels.items() if v.startswith("pos") or v == generic_pos]
        self.neg = [i for i, v in labels.items() if v.startswith("neg") or v == "label_0"]
        if len(self.pos) != 1 or len(self.neg) != 1:
            raise ValueError(f"cannot tell positive from negative in {name}'s labels {labels}")
        self.batch_size = batch_size

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
            out.extend((p[:, self.pos[0]] - p[:, self.neg[0]]).tolist())
        return out


# The MADPO paper's ground truth (three classes: negative, neutral, positive).
DEFAULT_CLASSIFIER = "cardiffnlp/twitter-roberta-base-sentiment-latest"


def make_scorer(name: str = "auto", log=print):
    """'vader', 'auto' (the hub classifier when the hub answers, else VADER), or a classifier name/path."""
    if name == "vader":
        scorer = VaderScorer()
    elif name == "auto":
        scorer = ClassifierScorer(DEFAULT_CLASSIFIER) if env.hub_reachable() else VaderScorer()
    else:
        scorer = ClassifierScorer(name)
    log(f"ground-truth scorer: {scorer.description}")
    return scorer
