"""Movie-review openings: IMDB from the hub when it answers, an offline set written for this project otherwise.

The offline set is composed here from short hand-written parts: an optional setting ("Last weekend,")
followed by an opening that a reviewer might start with ("I sat down to watch this film expecting").
Openings are deliberately neutral, so the policy can continue them either way and sentiment is a
property of the continuation, as in the IMDB set-up (whose 20-token prefixes are mostly neutral too).
It is not IMDB: the notebooks say which source they used.
"""

from __future__ import annotations

import numpy as np

from . import env

SETTINGS = [
    "Last weekend,", "Yesterday evening,", "On a friend's recommendation,", "After reading the book,",
    "On a long flight home,", "Late last night,", "Having seen the trailer,", "At a small festival screening,",
    "With low expectations,", "On a rainy Sunday afternoon,", "After years of waiting,", "For a film class,",
    "On cable the other night,", "Against my better judgement,", "With my whole family,", "On opening night,",
    "Out of sheer curiosity,", "After all the hype,", "On a second viewing,", "Because of the director,",
    "With a bowl of popcorn,", "Twenty years after its release,", "At a friend's house,", "On a quiet Tuesday,",
]

OPENINGS = [
    "I sat down to watch this film expecting",
    "I rented this movie and",
    "I finally watched this picture, and",
    "I went to see this movie with a friend and",
    "I watched this film from start to finish, and",
    "I put this DVD on and",
    "I caught this movie on television and",
    "I watched the director's latest effort and",
    "I gave this comedy a chance and",
    "I watched this thriller alone and",
    "I saw this drama in a nearly empty theater and",
    "I watched this animated feature with my kids and",
    "I picked up this horror movie from the bargain bin and",
    "I streamed this romantic comedy and",
    "I watched this war film and",
    "I sat through all two hours of this epic and",
    "I watched this documentary about a small town and",
    "I saw this science fiction film and",
    "I watched the remake of a film I love and",
    "I watched this low-budget independent movie and",
    "I sat down with this period drama and",
    "I went to the cinema for this sequel and",
    "I watched this musical on a whim and",
    "I watched this crime story and",
    "I watched the first film of this series and",
    "I watched this adaptation of a famous novel and",
    "I saw this foreign film with subtitles and",
    "I watched this family movie and",
    "I watched this western and",
    "I watched this mystery and",
    "I saw this movie about a boxer and",
    "I watched this film about two brothers and",
    "I finally saw the movie everyone talks about, and",
    "I watched this made-for-TV movie and",
    "I watched this old black and white classic and",
    "I watched this action movie and",
    "I saw the film that won the festival prize, and",
    "I watched this movie starring a famous singer and",
    "I watched this short film and",
    "I gave this film a fair chance, and",
]


def offline_prompts(n: int, seed: int = 0) -> list[str]:
    """`n` distinct openings, the same for the same (n, seed). At most 1,000 exist."""
    pool = list(OPENINGS) + [f"{s} {o}" for s in SETTINGS for o in OPENINGS]
    if n > len(pool):
        raise ValueError(f"the offline prompt set has {len(pool)} openings, asked for n={n}")
    order = np.random.default_rng(seed).permutation(len(pool))
    return [pool[i] for i in order[:n]]


def imdb_prompts(n: int, seed: int = 0, n_words: int = 12, split: str = "train") -> list[str]:
    """The first `n_words` words of `n` IMDB reviews (stanfordnlp/imdb), sampled with `seed`. Needs the hub."""
    from datasets import load_dataset

    ds = load_dataset("stanfordnlp/imdb", split=split)
    order = np.random.default_rng(seed).permutation(len(ds))
    out = []
    for i in order:
        text = ds[int(i)]["text"].replace("<br />", " ")
        words = text.split()
        if len(words) > n_words + 5:
            out.append(" ".join(words[:n_words]))
        if len(out) == n:
            break
    return out


def load_prompts(source: str, n: int, seed: int = 0, log=print) -> tuple[list[str], dict]:
    """(prompts, provenance). source: 'imdb', 'offline', or 'auto' (IMDB when the hub answers)."""
    if source not in ("auto", "imdb", "offline"):
        raise ValueError(f"unknown prompt source {source!r}; use 'auto', 'imdb' or 'offline'")
    if source in ("auto", "imdb") and env.hub_reachable():
        prompts = imdb_prompts(n, seed)
        prov = {"prompts": "IMDB (stanfordnlp/imdb, train split), first 12 words of each review"}
    else:
        if source == "imdb":
            log("the hub did not answer: using the offline review openings instead of IMDB")
        prompts = offline_prompts(n, seed)
        prov = {"prompts": "offline review openings written for apo-kit (not IMDB): apo_utils/prompts.py"}
    log(f"prompts: {len(prompts)} from {prov['prompts']}")
    return prompts, prov
