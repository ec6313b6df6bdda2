"""Movie-review openings: IMDB from the hub when it answers, an offline set written for this project otherwise.

The offline set is composed here from short hand-written parts: an optional setting ("Last weekend,")
followed by an opening that a reviewer might start with ("I sat down to watch this film expecting").
Openings are deliberately neutral, so the policy can continue them either way and sentiment is a
property of the continuation, as in the IMDB set-up (whose 20-token prefixes are mostly neutral too).
It is not IMDB: the notebooks say which source they used.
"""

from __future__ import annotations

import numpy as np

from . import env, hub

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
        raise ValueError(f"the offline prompt set has {len(pool)} openings, asked for n={n}: more prompts need IMDB "
                         "from the hub")
    order = np.random.default_rng(seed).permutation(len(pool))
    return [pool[i] for i in order[:n]]


IMDB = "stanfordnlp/imdb"
PROMPT_TOKENS = 20  # the MADPO authors' prompt length: the first 20 tokens of a review, Gemma's <bos> counted
# Without a tokenizer, the first 16 words stand in for 20 tokens: 19 Gemma-3 text tokens (20 with <bos>) covered
# 15.6 words on average (median 16) on the cpu profile's 5,251 review-like Gemma samples (measured).
WORDS_PER_PROMPT = 16


def review_opening(text: str, tokenizer=None, n_tokens: int = PROMPT_TOKENS, min_rest: int = 5) -> str | None:
    """The first `n_tokens` tokens of a review as text, or None when the review is too short to continue.

    With a tokenizer this is the authors' cut: `tokenizer(text, max_length=n_tokens, truncation=True)` decoded
    without special tokens, so a tokenizer that adds <bos> (Gemma's) keeps n_tokens - 1 text tokens. Without
    one, the first WORDS_PER_PROMPT * n_tokens / 20 words. HTML line breaks ("<br />") become spaces first.
    A review needs `min_rest` more tokens (words) than the opening, so that there is something to continue.
    """
    text = " ".join(text.replace("<br />", " ").split())
    if tokenizer is None:
        n_words = max(1, round(WORDS_PER_PROMPT * n_tokens / PROMPT_TOKENS))
        words = text.split()
        return " ".join(words[:n_words]) if len(words) >= n_words + min_rest else None
    ids = tokenizer(text, max_length=n_tokens, truncation=True)["input_ids"]
    if len(ids) < n_tokens or len(tokenizer(text)["input_ids"]) < n_tokens + min_rest:
        return None
    return tokenizer.decode(ids, skip_special_tokens=True).strip()


def imdb_prompts(n: int, seed: int = 0, tokenizer=None, n_tokens: int = PROMPT_TOKENS, split: str = "train",
                 order: str = "random") -> list[str]:
    """Openings of `n` IMDB reviews (stanfordnlp/imdb, read with `datasets`; needs the hub or its cache).

    order='random': reviews drawn with `seed` from the whole split (both labels). order='first': the split's
    first rows, as the MADPO authors took rows 0-11,999 of train - which are all negative reviews, since
    the train split lists its 12,500 negative reviews first.
    """
    import datasets

    if order not in ("random", "first"):
        raise ValueError(f"order must be 'random' or 'first', got {order!r}")
    if not (isinstance(n, int) and n > 0):
        raise ValueError(f"n must be a whole number > 0, got {n!r}")
    ds = datasets.load_dataset(IMDB, split=split)
    if "text" not in ds.column_names:
        raise ValueError(f"{IMDB} split {split!r} has no 'text' column (columns: {ds.column_names})")
    rows = np.random.default_rng(seed).permutation(len(ds)) if order == "random" else range(len(ds))
    out = []
    for i in rows:
        opening = review_opening(ds[int(i)]["text"], tokenizer, n_tokens)
        if opening:
            out.append(opening)
        if len(out) == n:
            return out
    raise ValueError(f"{IMDB} split {split!r} has only {len(out)} reviews long enough for a {n_tokens}-token opening; "
                     f"asked for n={n}")


def load_prompts(source: str, n: int, seed: int = 0, log=print, tokenizer=None,
                 order: str = "random") -> tuple[list[str], dict]:
    """(prompts, provenance). source: 'imdb', 'offline', or 'auto' (IMDB when the hub answers).

    tokenizer: the policy's (models.load_tokenizer), to cut IMDB reviews at the authors' 20 tokens; without
    it the cut is by words (WORDS_PER_PROMPT), and the provenance says which. If IMDB cannot be had (no
    network, not found, time-out, rate limit), the offline openings are used and the provenance says why.
    """
    if source not in ("auto", "imdb", "offline"):
        raise ValueError(f"unknown prompt source {source!r}; use 'auto', 'imdb' or 'offline'")
    failure = None
    if source in ("auto", "imdb"):
        if env.hub_reachable():
            try:
                prompts = imdb_prompts(n, seed, tokenizer=tokenizer, order=order)
            except Exception as e:  # noqa: BLE001 - any failure to read IMDB: explained, then the offline set
                failure = hub.explain(e, IMDB, "dataset")
            else:
                cut = (f"first {PROMPT_TOKENS} tokens of each review under the policy's tokenizer (special tokens "
                       f"counted, as the MADPO authors)" if tokenizer is not None else
                       f"first {WORDS_PER_PROMPT} words of each review (a whitespace stand-in for "
                       f"{PROMPT_TOKENS} tokens: no tokenizer given)")
                prov = {"prompts": f"IMDB ({IMDB}, train split, {'first rows' if order == 'first' else 'random rows'}"
                                   f"), {cut}", "prompt_source": "imdb"}
                log(f"prompts: {len(prompts)} from {prov['prompts']}")
                return prompts, prov
        else:
            failure = hub.HubUnavailable(IMDB, "offline", hub.message("offline", IMDB, "dataset"))
    prompts = offline_prompts(n, seed)
    prov = {"prompts": "offline review openings written for apo-kit (not IMDB): apo_utils/prompts.py",
            "prompt_source": "offline"}
    if failure is not None:
        prov.update(failure.record("prompts_"), prompts_fallback=f"{failure.message}. Using instead: the offline "
                                                                 "review openings written for this kit (not IMDB)")
        log(prov["prompts_fallback"])
    log(f"prompts: {len(prompts)} from {prov['prompts']}")
    return prompts, prov
