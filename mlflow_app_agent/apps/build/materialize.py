"""Materialize a model version into a Databricks Apps source directory.

Layout::

    app.yaml          command running the bundled server; env from declared resources
    pyproject.toml    uv mode (default): the model's requirements + the toolkit (path source)
    uv.lock             + the server runtime, locked for the target by uv
    requirements.txt  pip mode (``--installer pip``) instead: the same closure, pinned
    wheels/           this toolkit's wheel (it is not on the package index)
    model/            the version's artifacts, verbatim
    MANIFEST.json     provenance and the sha256 of every file (``verify`` checks it)
    README.md         what this is and how to run, verify and deploy it

The directory is built in a temp dir next to the target and renamed into place, so a
failure (or SIGINT/SIGTERM) leaves nothing behind, and a run removes staging directories
that killed runs left; the same version always yields a byte-identical tree: dependencies
are resolved for the target (see ``resolve.py``), not from this machine.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlflow_app_agent._version import __version__
from mlflow_app_agent.apps.build import app_yaml, install, resolve, wheel
from mlflow_app_agent.apps.build.install import INSTALLERS, BuildOptions
from mlflow_app_agent.apps.build.manifest import MANIFEST_FILE, list_files, write_manifest
from mlflow_app_agent.deploy_spec import DeploySpec
from mlflow_app_agent.errors import MaterializeError, TargetExistsError
from mlflow_app_agent.flavor import FLAVOR_NAME
from mlflow_app_agent.model.app_dir import (
    MAX_FILE_BYTES,
    MODEL_DIR,
    WHEELS_DIR,
)
from mlflow_app_agent.model.files import read_mlmodel
from mlflow_app_agent.model.location import Location

if TYPE_CHECKING:
    from mlflow_app_agent.model.origin import ModelOrigin

Progress = Callable[[str], None]


def check_no_escaping_links(root: Path) -> None:
    """Refuse a tree with a symlink that points outside it (it would ship foreign files)."""
    real_root = root.resolve()
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            if path.is_symlink():
                target = path.resolve()
                if target != real_root and real_root not in target.parents:
                    rel = path.relative_to(root).as_posix()
                    raise MaterializeError(
                        f"model artifact {rel!r} is a symlink to {os.readlink(path)!r}, outside "
                        "the model directory; refusing to copy it"
                    )


def _normalize_tree(root: Path) -> None:
    """Real files only, fixed permissions, no path leaving ``root``."""
    real_root = root.resolve()
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            if ".." in Path(rel).parts or real_root not in path.resolve().parents:
                raise MaterializeError(f"model artifact path {rel!r} escapes the directory")
            if path.is_symlink():  # an internal link (checked above): ship a real copy
                target = path.resolve()
                path.unlink()
                if target.is_dir():
                    shutil.copytree(target, path)
                else:
                    shutil.copyfile(target, path)
        for name in filenames:
            os.chmod(Path(dirpath) / name, 0o644)
        os.chmod(dirpath, 0o755)


def _normalize_registered_meta(model_dir: Path) -> None:
    """MLflow writes ``registered_model_meta`` at download time, typed differently per URI
    form (``1`` vs ``'1'``); one canonical spelling keeps ``model/`` identical across forms."""
    import yaml

    path = model_dir / "registered_model_meta"
    if not path.is_file():
        return
    doc = yaml.safe_load(path.read_text()) or {}
    if not isinstance(doc, dict):
        return
    if not doc.get("model_name"):  # models:/m-<id> downloads write an empty one
        path.unlink()
        return
    if doc.get("model_version") is not None:
        doc["model_version"] = str(doc["model_version"])
    path.write_text(yaml.safe_dump(doc, sort_keys=True))


def _check_sizes(root: Path) -> None:
    big = [(rel, (root / rel).stat().st_size) for rel in list_files(root)]
    big = [(rel, size) for rel, size in big if size > MAX_FILE_BYTES]
    if big:
        listed = ", ".join(f"{rel} ({size / 2**20:.1f} MiB)" for rel, size in big)
        raise MaterializeError(
            f"Databricks Apps rejects files over 10 MiB; too big: {listed}. Keep large "
            "weights or data out of the model (e.g. in a UC volume or a serving endpoint)."
        )


def _agent_facts(model_dir: Path) -> tuple[str, list[Any], list[str] | None, DeploySpec]:
    """(flavor, resources, server entrypoint, deploy spec) from the MLmodel."""
    from mlflow_app_agent.resources import parse_resources

    meta = read_mlmodel(model_dir)
    conf = meta.agent_conf
    if conf is not None:
        resources = parse_resources(conf.get("resources") or [])
        return (FLAVOR_NAME, resources, conf.get("server_entrypoint"),
                DeploySpec.from_dict(conf.get("deploy")))
    if meta.flavor is not None:
        return meta.flavor, [], None, DeploySpec()
    raise MaterializeError(
        f"the model has neither the {FLAVOR_NAME} nor the python_function flavor; it cannot be "
        "served as an agent"
    )


def _prepare_target(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise TargetExistsError(f"{out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise TargetExistsError(f"{out} exists and is not empty; pass --force to replace it")


def _swap_into_place(tmp: Path, out: Path) -> None:
    old = None
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        os.rename(out, old / out.name)
    try:
        os.rename(tmp, out)
    except OSError:
        if old is not None:  # put the previous directory back
            os.rename(old / out.name, out)
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def _readme(meta: dict[str, Any], spec: app_yaml.AppSpec) -> str:
    name = meta.get("registered_name")
    version = meta.get("registered_version")
    what = f"`{name}` version {version}" if name else f"`{meta.get('source_uri')}`"
    env_lines = "\n".join(
        f"- `{e['name']}` from resource `{e['valueFrom']}`" for e in spec.env if "valueFrom" in e
    ) or "- (no declared resources)"
    return f"""# Databricks App for {what}

Generated by mlflow-app-agent {__version__} with `mlflow-app-agent materialize`; do not
edit by hand (`MANIFEST.json` holds the sha256 of every file).

- logged model id: `{meta.get('model_id') or '-'}`, run id: `{meta.get('run_id') or '-'}`
- `model/`: the model's artifacts, verbatim; `wheels/`: the mlflow-app-agent wheel
- `app.yaml` starts the server: `{' '.join(spec.command)}`

Environment filled in by Databricks Apps from the app's resources:
{env_lines}

```
mlflow-app-agent verify .                      # nothing changed since materialize?
mlflow-app-agent run-local . --as-user me@example.com   # fresh venv, as Apps would
mlflow-app-agent deploy . --app NAME           # upload and deploy
```
"""


def _fetch_model(location: Location, tmp: Path, say: Progress) -> ModelOrigin:
    """Download (or copy) the model into ``tmp/model``, checked and normalized."""
    from mlflow_app_agent.model.load import download_model

    started = time.perf_counter()
    model_dir = tmp / MODEL_DIR
    if location.is_local:
        src = location.model_dir
        if src is None:  # an agent's Python file
            raise MaterializeError(
                f"{location.text!r} is a Python file, not a model; log it first "
                "(mlflow-app-agent log FILE.py) and materialize the logged model")
        check_no_escaping_links(src)
        say(f"Copying model from {location.path} ...")
    else:
        say(f"Downloading {location.text} ...")
    source = download_model(location, model_dir)
    assert source.local_path is not None
    if source.local_path.resolve() != model_dir.resolve():
        # e.g. runs:/ URIs download into a sub-directory named after the artifact path
        staged = tmp / ".staged"
        os.rename(source.local_path, staged)
        shutil.rmtree(model_dir, ignore_errors=True)
        os.rename(staged, model_dir)
    source.local_path = model_dir
    check_no_escaping_links(model_dir)
    _normalize_tree(model_dir)
    _normalize_registered_meta(model_dir)
    sizes = [(model_dir / rel).stat().st_size for rel in list_files(model_dir)]
    say(f"  model ready: {len(sizes)} files, {sum(sizes) / 2**20:.1f} MiB in "
        f"{time.perf_counter() - started:.1f} s")
    return source


def _write_app_files(tmp: Path, source: ModelOrigin, opts: BuildOptions,
                     target: resolve.Target, say: Progress, override: DeploySpec,
                     app_factory: str | None = None) -> None:
    """Everything next to ``model/``: wheel, dependencies, app.yaml, README, MANIFEST."""
    flavor, resources, entrypoint, declared = _agent_facts(tmp / MODEL_DIR)
    if app_factory:
        app_yaml.check_app_factory(tmp / MODEL_DIR, app_factory)
    deploy = declared.merged(override)
    built = wheel.build_wheel()
    (tmp / WHEELS_DIR).mkdir()
    shutil.copyfile(built, tmp / WHEELS_DIR / built.name)
    wheel_rel = f"./{WHEELS_DIR}/{built.name}"
    dep_files, dep_record = install.write_install_files(tmp, wheel_rel, opts, target, say)
    spec = app_yaml.build_app_spec(
        # the app dir itself: the server then reads MANIFEST.json for name/version
        model_location=".", model_id=source.model_id, resources=resources,
        entrypoint=entrypoint, app_factory=app_factory,
    )
    (tmp / app_yaml.APP_YAML).write_text(app_yaml.render(spec))
    meta = {
        **source.manifest_fields(),
        "flavor": flavor,
        "git": source.git,
        "toolkit_version": __version__,
        "resources": [r.to_dict() for r in resources],
        "dependencies": dep_record,
        **({"deploy": deploy.to_dict()} if deploy.to_dict() else {}),
        **({"app_factory": app_factory} if app_factory else {}),
    }
    (tmp / "README.md").write_text(_readme(meta, spec))
    for name in (f"{WHEELS_DIR}/{built.name}", *dep_files, app_yaml.APP_YAML, "README.md"):
        os.chmod(tmp / name, 0o644)
    _check_sizes(tmp)
    write_manifest(tmp, meta)
    os.chmod(tmp / MANIFEST_FILE, 0o644)
    os.chmod(tmp, 0o755)


def _staging_prefix(out: Path) -> str:
    return f".{out.name}.tmp-"


def _clean_stale_staging(out: Path) -> None:
    """Remove staging dirs of runs that were killed (their pid, in the name, is gone)."""
    if not out.parent.is_dir():
        return
    for entry in out.parent.glob(_staging_prefix(out) + "*"):
        pid_text = entry.name[len(_staging_prefix(out)):].split("-")[0]
        if not pid_text.isdigit():
            shutil.rmtree(entry, ignore_errors=True)  # an older run's (no pid in the name)
            continue
        try:
            os.kill(int(pid_text), 0)
        except ProcessLookupError:
            shutil.rmtree(entry, ignore_errors=True)
        except PermissionError:
            pass  # alive, someone else's


def materialize(
    model_uri: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    force: bool = False,
    progress: Progress | None = None,
    options: BuildOptions | None = None,
    user_api_scopes: Sequence[str] | None = None,
    compute_size: str | None = None,
    instances: Any = None,
    app_factory: str | None = None,
) -> Path:
    """Write the Apps source directory for ``model_uri`` into ``out_dir`` and return it.

    ``user_api_scopes`` (added), ``compute_size`` and ``instances`` (replacing the model's)
    go into ``MANIFEST.json``, where ``deploy`` reads them.

    ``model_uri``: ``models:/name/version``, ``models:/name@alias``, ``models:/m-<id>``,
    ``runs:/<run>/<path>``, a local model directory, or a materialized app directory.
    ``options``: installer (``uv`` default, or ``pip``), target Python and platform, index
    snapshot, timeout (see :class:`BuildOptions`).
    ``app_factory``: ``module:function`` from the model's ``code_paths`` that the app's
    command passes to ``serve --app-factory``. Refuses a non-empty ``out_dir`` unless
    ``force``. Raises :class:`MaterializeError`
    (or :class:`TargetExistsError`, :class:`ModelLoadError`) naming what is wrong.
    """
    say = progress or (lambda _msg: None)
    opts = options or BuildOptions()
    if opts.installer not in INSTALLERS:
        raise MaterializeError(
            f"--installer {opts.installer!r}: choose one of {', '.join(INSTALLERS)}"
        )
    target = resolve.parse_target(opts.python, opts.platform)
    if opts.exclude_newer:
        resolve.parse_exclude_newer(opts.exclude_newer)
    override = DeploySpec.build(user_api_scopes=user_api_scopes, compute_size=compute_size,
                                instances=instances)
    location = Location.parse(model_uri)
    out = Path(out_dir).absolute()
    _prepare_target(out, force)
    if location.path is not None and location.path.resolve() in out.resolve().parents:
        raise MaterializeError(
            f"{out} is inside the model directory {location.path}; choose a directory "
            "outside it"
        )
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        _clean_stale_staging(out)
        # built next to the target so the final rename stays on one filesystem
        tmp = Path(tempfile.mkdtemp(prefix=f"{_staging_prefix(out)}{os.getpid()}-",
                                    dir=out.parent))
    except OSError as exc:  # e.g. a parent that is a file, or no write permission
        raise MaterializeError(
            f"cannot create {out}: {exc.filename or out.parent}: {exc.strerror or exc}"
        ) from None
    try:
        source = _fetch_model(location, tmp, say)
        say("Bundling the mlflow-app-agent wheel ...")
        _write_app_files(tmp, source, opts, target, say, override, app_factory)
        _swap_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    say(f"Materialized {location.text} into {out}")
    return out
