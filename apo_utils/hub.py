"""Fetch a repository from the Hugging Face hub, and when that fails say why in words a learner can act on.

Every hub download of the kit (the policy, the sentiment classifier) goes through `fetch`: one call to
`huggingface_hub.snapshot_download`, so the network is touched in one place and a failure surfaces as one
`HubUnavailable` that names the repository, the reason (`gated`, `not_found`, `timeout`, `rate_limited`,
`offline`, ...) and what to do. The loaders catch it and fall back to the offline stand-ins, writing the
reason into the run record. A repository already in the local hub cache is used from there when the hub
does not answer (snapshot_download does this itself), so a run that fetched it once keeps it when the
connection drops.

The reason is read from the exception chain by type *name*, not by importing each HTTP library: which one
huggingface_hub uses (requests, httpx, httpx2) depends on its version, and Colab's may differ from CI's.
"""

from __future__ import annotations

import os
from pathlib import Path

from . import env

# What to do about a token, said once for every message that needs it.
TOKEN_ADVICE = ("on Colab add a secret HF_TOKEN (key icon) and allow this notebook to read it, or run "
                "`from huggingface_hub import login; login()`")
# The files a transformers model or tokenizer needs; never pickled weights (*.bin, *.pt, *.ckpt).
MODEL_FILES = ["*.json", "*.safetensors", "tokenizer*", "*.model", "*.txt", "*.tiktoken"]


class HubUnavailable(RuntimeError):
    """A repository could not be fetched. `reason` is a short code, str(self) the message for the learner."""

    def __init__(self, repo_id: str, reason: str, message: str):
        super().__init__(message)
        self.repo_id, self.reason, self.message = repo_id, reason, message

    def record(self, prefix: str = "") -> dict:
        """What a run record keeps about the failure; `prefix` keeps keys apart when records are merged."""
        return {f"{prefix}requested": self.repo_id, f"{prefix}failure": self.reason,
                f"{prefix}failure_message": self.message}


def page(repo_id: str, repo_type: str = "model") -> str:
    return f"https://huggingface.co/{'datasets/' if repo_type == 'dataset' else ''}{repo_id}"


def _chain(exc: BaseException):
    """exc, then what caused it (raise ... from ...), then what it interrupted, without loops."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _names(exc: BaseException) -> set[str]:
    return {c.__name__ for c in type(exc).__mro__}


def _status(exc: BaseException) -> int | None:
    """The HTTP status an exception carries (huggingface_hub's errors keep the response), else None."""
    response = getattr(exc, "response", None)
    code = getattr(response, "status_code", None) or getattr(exc, "status_code", None)
    return code if isinstance(code, int) else None


def diagnose(exc: BaseException) -> tuple[str, int | None]:
    """(reason, HTTP status or None) for an exception raised while fetching from the hub.

    Reasons: gated, rate_limited, not_found, timeout, offline, unreachable, server_error, denied, error.
    Order matters: GatedRepoError is a RepositoryNotFoundError, and a connect time-out is a connection error.
    """
    chain = list(_chain(exc))
    names = [_names(e) for e in chain]
    status = next((s for s in map(_status, chain) if s is not None), None)
    if any("GatedRepoError" in n for n in names):
        return "gated", status
    if status == 429:
        return "rate_limited", status
    if any(n & {"RepositoryNotFoundError", "RevisionNotFoundError", "RemoteEntryNotFoundError",
                "DatasetNotFoundError"} for n in names):
        return "not_found", status
    if any(isinstance(e, TimeoutError) or any("Timeout" in x for x in n) for e, n in zip(chain, names)):
        return "timeout", status
    if any("OfflineModeIsEnabled" in n for n in names):
        return "offline", status
    if any(isinstance(e, ConnectionError) or n & {"ConnectError", "ConnectionError", "NetworkError"}
           for e, n in zip(chain, names)):
        return "unreachable", status
    if status is not None and status >= 500:
        return "server_error", status
    if status in (401, 403):
        return "denied", status
    if any("LocalEntryNotFoundError" in n for n in names):  # no cached copy and nothing said why: offline
        return "offline", status
    return "error", status


def message(reason: str, repo_id: str, repo_type: str = "model", status: int | None = None,
            exc: BaseException | None = None) -> str:
    """What failed and what to do, for a reason code of `diagnose`."""
    url = page(repo_id, repo_type)
    first_line = (str(exc).strip().splitlines() or [""])[0][:200] if exc is not None else ""
    return {
        "gated": f"{repo_id} is gated: accept the licence at {url} and give a token: {TOKEN_ADVICE}",
        "rate_limited": (f"the hub refused {repo_id} for now: too many requests (HTTP 429); wait a few minutes "
                         f"and run the cell again (logged-in users get a higher limit: {TOKEN_ADVICE})"),
        "not_found": (f"{repo_id} was not found on the hub ({url}): check the name; if it is private or gated, "
                      f"give a token that may read it: {TOKEN_ADVICE}"),
        "timeout": f"the hub timed out while fetching {repo_id}: the connection is slow or down; try again later",
        "offline": (f"the hub cannot be reached from here (no network, or HF_HUB_OFFLINE is set) and {repo_id} "
                    "is not in the local hub cache"),
        "unreachable": f"the hub could not be reached while fetching {repo_id} (the connection failed)",
        "server_error": f"the hub answered HTTP {status} (a server error) for {repo_id}; try again later",
        "denied": (f"the hub refused access to {repo_id} (HTTP {status}): the token may be wrong or lack read "
                   f"access: {TOKEN_ADVICE}"),
        "error": f"fetching {repo_id} failed: {type(exc).__name__ if exc is not None else 'error'}: {first_line}",
    }[reason]


def explain(exc: BaseException, repo_id: str, repo_type: str = "model") -> HubUnavailable:
    """The HubUnavailable for an exception raised while fetching `repo_id`."""
    reason, status = diagnose(exc)
    return HubUnavailable(repo_id, reason, message(reason, repo_id, repo_type, status, exc))


def revision_of(folder: Path) -> str | None:
    """The commit a hub-cache snapshot folder holds (its name), else None (a plain local folder)."""
    folder = Path(folder)
    return folder.name if folder.parent.name == "snapshots" else None


def is_repo_id(name: str) -> bool:
    """Whether `name` has the form of a hub repository id: 'name' or 'owner/name', letters, digits, '-', '_', '.'."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def looks_like_a_path(name: str) -> bool:
    """Whether `name` can only mean a local path, never a hub repository.

    './x', '../x', '~/x', absolute paths, and names a hub id cannot have (a backslash, two '/'...) are paths. An
    'owner/name' is a hub id unless its 'owner' is a folder here: 'models/gemma' beside a folder `models` is a
    path to a model not there (yet), not the hub user 'models'."""
    separated = "/" in name or os.sep in name
    if name.startswith((".", "~")) or os.path.isabs(name):
        return True
    if not is_repo_id(name):
        return separated
    return separated and Path(name.split("/")[0]).is_dir()


def refuse_missing_path(name: str):
    """FileNotFoundError for a `name` that can only be a local path but is no folder here.

    Without it a mistyped path was taken for a hub name and, offline or on a failed fetch, replaced by the
    stand-in model: a run on the wrong weights, with only a log line to say so."""
    if not looks_like_a_path(name) or Path(name).expanduser().is_dir():
        return
    where = Path(name).expanduser().absolute()
    if where.exists():
        raise NotADirectoryError(f"{name} is a file ({where}); a model is loaded from the folder that holds its "
                                 f"config.json, weights and tokenizer: give that folder")
    raise FileNotFoundError(f"{name} does not exist (looked for {where}): check the path. A local model is a "
                            f"folder with its config.json, weights and tokenizer; a hub repository is named "
                            f"'owner/name', e.g. google/gemma-3-270m")


def fetch(repo_id: str, repo_type: str = "model", allow_patterns: list[str] | None = None) -> Path:
    """Local folder with the repository's files (downloaded once into the hub cache); HubUnavailable if not.

    When the hub does not answer a quick check (`env.hub_reachable`), only the local hub cache is looked at,
    so an offline machine fails in milliseconds instead of waiting for time-outs. A `repo_id` that can only be a
    local path ('./my-model', `looks_like_a_path`) raises FileNotFoundError instead: it is no hub failure.
    """
    import huggingface_hub

    refuse_missing_path(repo_id)  # a path is not fetched: its absence must not read as a hub failure
    patterns = MODEL_FILES if allow_patterns is None and repo_type == "model" else allow_patterns
    online = env.hub_reachable()
    try:
        return Path(huggingface_hub.snapshot_download(repo_id, repo_type=repo_type, allow_patterns=patterns,
                                                      local_files_only=not online))
    except Exception as e:  # noqa: BLE001 - every failure becomes one explained HubUnavailable
        if not online:  # only the cache was asked: whatever it raised, the cause is the missing network
            raise HubUnavailable(repo_id, "offline", message("offline", repo_id, repo_type)) from e
        raise explain(e, repo_id, repo_type) from e
