from apo_utils.ground_truth import VaderScorer

import pytest


def test_vader_orders_clear_sentiment_and_is_deterministic():
    s = VaderScorer()
    texts = ["A wonderful, moving film with superb acting.", "It was a film.", "Dull, boring and badly acted."]
    a = s(texts, batch_size=2, progress=False)
    assert a[0] > 0.5 > a[1] > -0.5 > a[2]
    assert a == s(texts, progress=False)
    assert all(-1.0 <= x <= 1.0 for x in a)


def test_vader_rejects_bad_input():
    s = VaderScorer()
    with pytest.raises(ValueError, match="list of strings"):
        s("one string")
    with pytest.raises(ValueError, match=r"texts\[1\] is NoneType"):
        s(["fine", None], progress=False)
