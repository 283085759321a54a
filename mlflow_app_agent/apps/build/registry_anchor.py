"""Anchor a materialized app directory in the model registry.

``MANIFEST.json`` proves that the files match *it*, but whoever can write the directory can
rewrite the manifest too (``registered_version``, ``git.commit``, the hashes). So
``materialize`` records the sha256 of the manifest it wrote on the registered model version,
where write access to the directory does not reach: the model version tag
:data:`DIGEST_TAG` holds the digests of the manifests materialized from that version (one
version can be materialized with different options), space-separated, newest last, at most
:data:`MAX_DIGESTS` (Unity Catalog allows 1,000 characters per tag value and no ``.`` or
``-`` in tag keys).

``verify --registry`` (:func:`verify_against_registry`) checks a directory against the
current registry URI: the directory matches its manifest; the manifest's digest is one
recorded on the version the manifest names; and ``model/`` equals that version's artifacts,
downloaded and normalized as ``materialize`` does.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlflow_app_agent.apps.build.manifest import file_entries, read_manifest, sha256_file, verify
from mlflow_app_agent.errors import ManifestMismatchError
from mlflow_app_agent.model.app_dir import MANIFEST_FILE, MODEL_DIR

DIGEST_TAG = "mlflow_app_agent_manifest_sha256"
MAX_DIGESTS = 15  # 15 x 65 characters < 1,000

Progress = Callable[[str], None]


def manifest_digest(app_dir: str | os.PathLike[str]) -> str:
    """The sha256 of the directory's ``MANIFEST.json`` bytes."""
    return sha256_file(Path(app_dir) / MANIFEST_FILE)


def recorded_digests(tags: dict[str, str] | None) -> list[str]:
    return (tags or {}).get(DIGEST_TAG, "").split()


def record_digest(name: str, version: str, digest: str) -> bool:
    """Add ``digest`` to the version's :data:`DIGEST_TAG` (kept to the newest
    :data:`MAX_DIGESTS`); False when it was already there."""
    import mlflow

    client = mlflow.MlflowClient()
    digests = recorded_digests(client.get_model_version(name, version).tags)
    if digest in digests:
        return False
    digests = [*digests, digest][-MAX_DIGESTS:]
    client.set_model_version_tag(name, version, DIGEST_TAG, " ".join(digests))
    return True


def anchor(app_dir: Path, meta: dict[str, Any], say: Progress) -> None:
    """After ``materialize``: record the manifest's digest on the registered version. A
    registry that refuses (no permission to tag) is one warning line, not a failure."""
    name, version = meta.get("registered_name"), meta.get("registered_version")
    if not name or version is None:
        say("The manifest is not anchored in the registry (the model is not a registered "
            "version): verify can check this directory's self-consistency only.")
        return
    uri = f"models:/{name}/{version}"
    try:
        record_digest(str(name), str(version), manifest_digest(app_dir))
    except Exception as exc:  # noqa: BLE001 - the directory is fine; say what is missing
        say(f"Warning: could not record the manifest's sha256 on {uri} (tag {DIGEST_TAG}): "
            f"{_one_line(exc)}; verify --registry will not confirm this directory.")
        return
    say(f"Recorded the manifest's sha256 on {uri} (tag {DIGEST_TAG}); "
        f"verify --registry checks the directory against it.")


def _one_line(exc: BaseException) -> str:
    text = str(getattr(exc, "message", "") or exc).strip()
    first = text.splitlines()[0][:300] if text else ""
    return first or type(exc).__name__


def verify_against_registry(app_dir: str | os.PathLike[str],
                            progress: Progress | None = None) -> str:
    """Check ``app_dir`` against its manifest and the registry. Returns the registered
    version's URI; raises :class:`ManifestMismatchError` naming every problem."""
    from mlflow.exceptions import MlflowException

    say = progress or (lambda _msg: None)
    root = Path(app_dir)
    problems = verify(root, raise_on_mismatch=False)
    manifest = read_manifest(root)
    name, version = manifest.get("registered_name"), manifest.get("registered_version")
    if not name or version is None:
        raise ManifestMismatchError(
            f"{app_dir}: its {MANIFEST_FILE} names no registered model version (source "
            f"{manifest.get('source_uri')!r}); there is nothing in the registry to check it "
            "against", problems=problems)
    uri = f"models:/{name}/{version}"
    import mlflow

    try:
        mv = mlflow.MlflowClient().get_model_version(str(name), str(version))
    except MlflowException as exc:
        raise ManifestMismatchError(
            f"{app_dir}: {uri}, which its {MANIFEST_FILE} names, cannot be read from the "
            f"registry: {_one_line(exc)}",
            problems=[*problems, f"not in the registry: {uri}"]) from None
    digests = recorded_digests(mv.tags)
    if not digests:
        problems.append(f"unanchored: {MANIFEST_FILE} ({uri} has no {DIGEST_TAG} tag: "
                        "materialized without tagging it, or the tag was removed)")
    elif manifest_digest(root) not in digests:
        problems.append(f"changed: {MANIFEST_FILE} (not a manifest materialize recorded on "
                        f"{uri})")
    problems.extend(_model_problems(root, uri, say))
    if problems:
        shown = "; ".join(problems[:10]) + (
            f"; ... and {len(problems) - 10} more" if len(problems) > 10 else "")
        raise ManifestMismatchError(
            f"{app_dir} does not match the registry's {uri}: {shown}", problems=problems)
    return uri


def _model_problems(root: Path, uri: str, say: Progress) -> list[str]:
    """``model/`` against the version's artifacts, fetched as ``materialize`` does."""
    from mlflow_app_agent.apps.build.materialize import fetch_model
    from mlflow_app_agent.model.location import Location

    tmp = Path(tempfile.mkdtemp(prefix=".verify-"))
    try:
        fetch_model(Location.parse(uri), tmp, say)
        want = file_entries(tmp / MODEL_DIR)
        got = file_entries(root / MODEL_DIR) if (root / MODEL_DIR).is_dir() else {}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    problems = []
    for rel in sorted(set(want) | set(got)):
        path = f"{MODEL_DIR}/{rel}"
        if rel not in got:
            problems.append(f"missing: {path} (in the registry's artifacts)")
        elif rel not in want:
            problems.append(f"extra: {path} (not in the registry's artifacts)")
        elif want[rel] != got[rel]:
            problems.append(f"changed: {path} (differs from the registry's artifact)")
    return problems


__all__ = ["DIGEST_TAG", "anchor", "manifest_digest", "record_digest", "verify_against_registry"]
