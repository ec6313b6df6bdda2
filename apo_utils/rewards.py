"""Ground-truth sentiment scorers with one interface: `scorer(texts) -> list[float]`, higher = more positive.

VADER (`vaderSentiment`, a lexicon and rules shipped inside the package) is the offline ground truth:
no download, deterministic, about 10k short texts a second on one core. Its compound score lies in
[-1, 1].
"""

from __future__ import annotations

from tqdm.auto import tqdm


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
