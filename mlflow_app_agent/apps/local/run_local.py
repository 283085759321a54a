"""``run-local``: run a materialized app directory the way Databricks Apps would.

1. a fresh virtualenv (cached per hash of the install files; ``fresh=True`` rebuilds it),
2. the install Apps would run, by the app's mode: ``uv sync --frozen`` (pyproject.toml +
   uv.lock, on the Python ``requires-python`` names) or ``pip install -r requirements.txt``
   (the output is shown),
3. the ``app.yaml`` command, without a shell, with ``$DATABRICKS_APP_PORT`` substituted and
   the environment Apps sets (``DATABRICKS_APP_PORT``, ``DATABRICKS_APP_NAME``, ...),
4. wait for ``/ready``, then a local proxy adding the headers the Apps proxy adds.

The app gets a clean environment, not this process's: what works here works on Apps.
"""

from __future__ import annotations

import collections
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import filelock

from mlflow_app_agent.apps.build import app_yaml
from mlflow_app_agent.apps.build.wheel import cache_dir
from mlflow_app_agent.apps.local import proxy
from mlflow_app_agent.apps.local.installer import (
    _stream,
    _uv_sync,
    app_python,
    requirements_key,
)
from mlflow_app_agent.errors import ManifestMismatchError, RunLocalError
from mlflow_app_agent.model.app_dir import (
    REQUIREMENTS_FILE,
    install_mode,
)

Progress = Callable[[str], None]
_COMPLETE = ".mlflow-app-agent-complete"
_SERVE_MODULE = "mlflow_app_agent.serve"
# caller variables handed to the app: credentials the SDK reads and proxy/CA settings
_PASS_THROUGH = re.compile(
    r"^(DATABRICKS_(HOST|TOKEN|CLIENT_ID|CLIENT_SECRET|CONFIG_PROFILE|CONFIG_FILE|"
    r"WORKSPACE_ID)|MLFLOW_TRACKING_URI|MLFLOW_REGISTRY_URI|HOME|LANG|LC_ALL|TMPDIR|TZ|"
    r"(HTTPS?|NO)_PROXY|(https?|no)_proxy|SSL_CERT_FILE|REQUESTS_CA_BUNDLE)$"
)


@dataclass
class RunLocalOptions:
    as_user: str = "local-user@example.com"
    port: int = 8000
    host: str = "127.0.0.1"
    app_name: str | None = None
    access_token_env: str | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    fresh: bool = False
    ready_timeout: float = 120.0
    venv_root: Path | None = None


def ensure_venv(app_dir: Path, *, root: Path | None = None, fresh: bool = False,
                progress: Progress | None = None) -> Path:
    """A venv with the app's requirements installed; reused while they are unchanged."""
    say = progress or (lambda _m: None)
    root = root or cache_dir() / "venvs"
    key = requirements_key(app_dir)
    venv = root / key
    root.mkdir(parents=True, exist_ok=True)
    # two run-locals of one app share a venv safely: the second waits for the first's build
    with filelock.FileLock(root / f"{key}.lock"):
        if (venv / _COMPLETE).is_file() and not fresh:
            say(f"Reusing the venv for these requirements: {venv}")
            return venv
        shutil.rmtree(venv, ignore_errors=True)
        say(f"Creating a fresh venv: {venv}")
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        tail: collections.deque[str] = collections.deque(maxlen=30)
        started = time.perf_counter()
        if install_mode(app_dir) == "uv":
            _uv_sync(app_dir, venv, env, say, tail)
            (venv / _COMPLETE).write_text(key + "\n")
            say(f"  installed in {time.perf_counter() - started:.0f} s")
            return venv
        if _stream([app_python(app_dir), "-m", "venv", str(venv)], cwd=app_dir, env=env, say=say,
                   prefix="  venv: ", tail=tail):
            raise RunLocalError("creating the venv failed: " + " | ".join(tail))
        say("pip install -r requirements.txt (as Databricks Apps does) ...")
        python = str(venv / "bin" / "python")
        code = _stream(
            [python, "-m", "pip", "install", "--disable-pip-version-check", "--progress-bar",
             "off", "-r", REQUIREMENTS_FILE],
            cwd=app_dir, env=env, say=say, prefix="  pip: ", tail=tail,
        )
        if code:
            shutil.rmtree(venv, ignore_errors=True)
            last = [line for line in tail if line.strip()][-5:]
            raise RunLocalError(
                "pip install -r requirements.txt failed; last lines:\n  " + "\n  ".join(last)
            )
        (venv / _COMPLETE).write_text(key + "\n")
        say(f"  installed in {time.perf_counter() - started:.0f} s")
        return venv


def free_port(host: str = "127.0.0.1") -> int:
    sock = proxy.bind(host, 0)
    try:
        return int(sock.getsockname()[1])
    finally:
        sock.close()


def app_environment(spec: app_yaml.AppSpec, *, venv: Path, port: int, app_name: str,
                    options: RunLocalOptions, say: Progress) -> dict[str, str]:
    """The environment Apps gives the app process, with local stand-ins."""
    env = {k: v for k, v in os.environ.items() if _PASS_THROUGH.match(k)}
    env.update(spec.values())
    env.update(_tracking_env(spec, venv, say))
    for name, resource in spec.value_from().items():
        if name not in options.extra_env:
            say(f"Note: {name} comes from app resource {resource!r} on Apps; set it here "
                f"with --env {name}=VALUE")
    env.update(options.extra_env)
    env.update({
        "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
        "VIRTUAL_ENV": str(venv),
        "DATABRICKS_APP_PORT": str(port),
        "DATABRICKS_APP_NAME": app_name,
        "PYTHONUNBUFFERED": "1",
        # keep the app directory byte-identical to its MANIFEST (verify after a run)
        "PYTHONDONTWRITEBYTECODE": "1",
    })
    return env


def _has_databricks_auth() -> bool:
    return bool(os.environ.get("DATABRICKS_HOST") or os.environ.get("DATABRICKS_CONFIG_PROFILE")
                or (Path.home() / ".databrickscfg").is_file())


def _tracking_env(spec: app_yaml.AppSpec, venv: Path, say: Progress) -> dict[str, str]:
    """Where the app's traces go locally. The caller's ``MLFLOW_TRACKING_URI`` wins; a
    ``databricks`` URI is kept only when Databricks credentials exist here; otherwise the
    local sqlite store quickstart uses, or no tracing if the venv cannot write sqlite."""
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return {"MLFLOW_TRACKING_URI": os.environ["MLFLOW_TRACKING_URI"]}
    wanted = spec.values().get("MLFLOW_TRACKING_URI", "")
    if not wanted.startswith("databricks") or _has_databricks_auth():
        return {}
    if list(venv.glob("lib/python*/site-packages/sqlalchemy")):
        uri = f"sqlite:///{Path.cwd().resolve() / 'mlflow.db'}"
        say(f"Note: no Databricks credentials here; traces go to {uri} (set "
            "MLFLOW_TRACKING_URI to choose)")
        return {"MLFLOW_TRACKING_URI": uri}
    say("Note: no Databricks credentials and no local MLflow store here; tracing is off "
        "(set MLFLOW_TRACKING_URI to turn it on)")
    return {"MLFLOW_APP_AGENT_TRACING": "false"}


def app_command(spec: app_yaml.AppSpec, venv: Path, port: int, host: str = "127.0.0.1"
                ) -> list[str]:
    """Apps' substitution: ``$DATABRICKS_APP_PORT`` only, no shell."""
    cmd = [arg.replace("${DATABRICKS_APP_PORT}", str(port))
           .replace(app_yaml.PORT_VAR, str(port)) for arg in spec.command]
    exe = shutil.which(cmd[0], path=str(venv / "bin")) or shutil.which(cmd[0])
    if exe is None:
        raise RunLocalError(f"app.yaml command {cmd[0]!r} is not installed in the venv")
    if _SERVE_MODULE in cmd and not any(a == "--host" or a.startswith("--host=") for a in cmd):
        # the bundled server binds 0.0.0.0 as Apps requires; locally, loopback only
        cmd.append(f"--host={host}")
    return [exe, *cmd[1:]]


class LocalApp:
    """The app process plus the proxy; use as a context manager or ``start``/``stop``."""

    def __init__(self, app_dir: str | os.PathLike[str], options: RunLocalOptions | None = None,
                 progress: Progress | None = None) -> None:
        self.app_dir = Path(app_dir).resolve()
        self.options = options or RunLocalOptions()
        self.say = progress or (lambda _m: None)
        self.process: subprocess.Popen[str] | None = None
        self._proxy: proxy.ProxyThread | None = None
        self._tail: collections.deque[str] = collections.deque(maxlen=40)
        self.app_port = 0
        self.url = ""

    def start(self) -> str:
        opts = self.options
        spec = app_yaml.read_app_spec(self.app_dir)
        self._note_local_changes()
        token = None
        if opts.access_token_env:
            token = os.environ.get(opts.access_token_env)
            if not token:
                raise RunLocalError(f"--access-token-env: env var {opts.access_token_env} "
                                    "is not set")
        try:
            sock = proxy.bind(opts.host, opts.port)
        except OSError as exc:
            raise RunLocalError(
                f"cannot listen on {opts.host}:{opts.port} ({exc.strerror}); pass --port 0 "
                "for a free port"
            ) from None
        try:
            venv = ensure_venv(self.app_dir, root=opts.venv_root, fresh=opts.fresh,
                               progress=self.say)
            self.app_port = free_port(opts.host)
            app_name = opts.app_name or re.sub(r"[^a-z0-9-]+", "-", self.app_dir.name.lower())
            env = app_environment(spec, venv=venv, port=self.app_port, app_name=app_name,
                                  options=opts, say=self.say)
            cmd = app_command(spec, venv, self.app_port, opts.host)
            self.say(f"Starting: {' '.join(cmd)} (DATABRICKS_APP_PORT={self.app_port})")
            self.process = subprocess.Popen(
                cmd, cwd=self.app_dir, env=env, stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, text=True, start_new_session=True,
            )
            threading.Thread(target=self._pump, daemon=True, name="run-local-app-log").start()
            self._wait_ready(opts.ready_timeout)
            identity = proxy.Identity(
                email=opts.as_user, access_token=token,
                workspace_id=os.environ.get("DATABRICKS_WORKSPACE_ID", "0"),
            )
            upstream = f"http://{opts.host}:{self.app_port}"
            self._proxy = proxy.ProxyThread(proxy.create_proxy_app(upstream, identity), sock)
            self._proxy.start()
        except BaseException:
            sock.close()
            self.stop()
            raise
        self.url = f"http://{opts.host}:{self._proxy.port}"
        return self.url

    def _note_local_changes(self) -> None:
        """Local edits are fine for trying things out, but say what will differ on Apps."""
        from mlflow_app_agent.apps.build.manifest import MANIFEST_FILE, verify

        if not (self.app_dir / MANIFEST_FILE).is_file():
            return
        try:
            problems = verify(self.app_dir, raise_on_mismatch=False)
        except ManifestMismatchError as exc:  # an unreadable manifest
            problems = [exc.message]
        if problems:
            self.say(f"Note: {self.app_dir} differs from its {MANIFEST_FILE} "
                     f"({'; '.join(problems[:5])}); deploy will refuse it until re-materialized")

    def _pump(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            line = line.rstrip()
            self._tail.append(line)
            self.say(f"  app: {line}")

    def _wait_ready(self, timeout: float) -> None:
        import httpx

        assert self.process is not None
        deadline = time.monotonic() + timeout
        url = f"http://{self.options.host}:{self.app_port}/ready"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                time.sleep(0.2)  # let the log pump catch the last lines
                raise RunLocalError(
                    f"the app exited with code {self.process.returncode} before it was ready;"
                    " last output:\n  " + "\n  ".join(list(self._tail)[-15:])
                )
            try:
                if httpx.get(url, timeout=2.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise RunLocalError(f"the app was not ready within {timeout:.0f} s ({url})")

    def stop(self) -> int | None:
        """Stop the proxy, then the app: SIGTERM, and SIGKILL after 15 s as Apps does."""
        if self._proxy is not None:
            self._proxy.stop()
            self._proxy = None
        proc = self.process
        if proc is None:
            return None
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        return proc.returncode

    def __enter__(self) -> LocalApp:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run_local(app_dir: str | os.PathLike[str], options: RunLocalOptions | None = None, *,
              progress: Progress | None = None,
              on_ready: Callable[[str], None] | None = None) -> int:
    """Run until the app exits or we get SIGINT/SIGTERM; return the app's exit code."""
    app = LocalApp(app_dir, options, progress)

    def _terminate(_sig: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        url = app.start()
        if on_ready is not None:
            on_ready(url)
        assert app.process is not None
        code = app.process.wait()
        (progress or (lambda _m: None))(f"The app exited with code {code}")
        return code
    except KeyboardInterrupt:
        app.stop()
        return 0
    finally:
        app.stop()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
