"""Which model versions are loaded: version policy, file-system polling, hot swap.

Each configured model has a base path whose purely numeric children are versions (the pusher
writes ``.tmp-*`` folders and renames them into place, so anything else is ignored). A poll
loads the versions the policy aspires to, warms them up, and only then unloads versions that
are no longer aspired, and never the last available one while a replacement is failing: a
version that fails to load or warm up is reported with state END and its error in
GetModelStatus, and the old one keeps serving. A version whose folder disappears is unloaded.
Request paths never reach the file system: names and versions are looked up in memory.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import grpc

from visionpipe.serving import errors
from visionpipe.serving.model_config import select_versions, validate_model_server_config

log = logging.getLogger(__name__)

# tensorflow.serving.ModelVersionStatus.State
START, LOADING, AVAILABLE, UNLOADING, END = "START", "LOADING", "AVAILABLE", "UNLOADING", "END"


@dataclasses.dataclass
class VersionStatus:
    state: str
    error_code: grpc.StatusCode = grpc.StatusCode.OK
    error_message: str = ""


@dataclasses.dataclass
class _Model:
    config: object  # tensorflow.serving.ModelConfig
    loaded: Dict[int, object] = dataclasses.field(default_factory=dict)
    status: Dict[int, VersionStatus] = dataclasses.field(default_factory=dict)
    # version -> saved_model.pb (size, mtime) that failed, so a fixed copy is retried
    failed: Dict[int, Tuple[int, float]] = dataclasses.field(default_factory=dict)


def list_versions(base_path: str | Path) -> Optional[Dict[int, Path]]:
    """Complete version folders under base_path; None when base_path cannot be listed."""
    try:
        entries = list(os.scandir(base_path))
    except OSError:
        return None
    versions = {}
    for entry in entries:
        if entry.name.isdigit() and entry.name.isascii() and entry.is_dir():
            path = Path(entry.path)
            if (path / "saved_model.pb").is_file() or (path / "saved_model.pbtxt").is_file():
                versions[int(entry.name)] = path
    return versions


def _fingerprint(path: Path) -> Tuple[int, float]:
    try:
        stat = (path / "saved_model.pb").stat()
        return stat.st_size, stat.st_mtime
    except OSError:
        return -1, 0.0


class ModelManager:
    """Loads, serves and unloads versions of the configured models."""

    def __init__(self, config, loader: Callable[[str, int, Path], object],
                 poll_wait_seconds: float = 1.0,
                 on_change: Optional[Callable[[str, int, str], None]] = None,
                 on_models_changed: Optional[Callable[[], None]] = None):
        """``loader(name, version, path)`` returns a loaded and warmed-up servable or raises.

        ``on_change(name, version, event)`` follows each version event ("loaded", "unloaded",
        "load_failed"); ``on_models_changed()`` follows a config change that added or removed
        models. Both are called after the change and without the manager's lock held."""
        self._loader = loader
        self._poll_wait = poll_wait_seconds
        self._on_change = on_change
        self._on_models_changed = on_models_changed
        self._lock = threading.RLock()  # guards _models
        self._reconcile_lock = threading.Lock()  # one poll at a time
        self._models: Dict[str, _Model] = {}
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self.set_config(config, reconcile=False)

    # --- configuration ----------------------------------------------------------------
    def set_config(self, config, reconcile: bool = True) -> None:
        """Apply a ModelServerConfig; models no longer listed are unloaded."""
        validate_model_server_config(config)
        with self._lock:
            wanted = {m.name: m for m in config.model_config_list.config}
            removed = {name: self._models.pop(name) for name in list(self._models) if name not in wanted}
            added = [name for name in wanted if name not in self._models]
            for name, model_config in wanted.items():
                if name in self._models:
                    self._models[name].config = model_config
                else:
                    self._models[name] = _Model(config=model_config)
        # Listeners run after the change (a removed model reads as gone) and outside the lock.
        for name, model in removed.items():
            for version in sorted(model.loaded):
                self._notify(name, version, "unloaded")
        if (removed or added) and self._on_models_changed is not None:
            self._on_models_changed()
        if reconcile:
            self.poll()

    # --- lifecycle ----------------------------------------------------------------------
    def start(self) -> None:
        """Poll once now; then keep polling unless the poll wait is 0 (TF Serving semantics)."""
        self.poll()
        if self._poll_wait > 0:
            self._thread = threading.Thread(target=self._poll_loop, name="model-poll", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _poll_loop(self) -> None:
        while not self._stop.wait(self._poll_wait):
            try:
                self.poll()
            except Exception:  # keep serving whatever happens on disk
                log.exception("model poll failed")

    def poll(self) -> None:
        with self._reconcile_lock:
            with self._lock:
                names = list(self._models)
            for name in names:
                self._reconcile(name)

    def _reconcile(self, name: str) -> None:
        with self._lock:
            model = self._models.get(name)
            if model is None:
                return
            config = model.config
        on_disk = list_versions(config.base_path)
        if on_disk is None:
            log.warning("model %s: base path %s cannot be listed; keeping loaded versions",
                        name, config.base_path)
            return
        aspired = select_versions(config, on_disk)
        for version in sorted(aspired - set(model.loaded), reverse=True):
            path = on_disk[version]
            fingerprint = _fingerprint(path)
            if model.failed.get(version) == fingerprint:
                continue
            self._set_status(model, version, VersionStatus(LOADING))
            try:
                servable = self._loader(name, version, path)
            except Exception as err:  # any load or warm-up failure is reported, not raised
                message = f"Failed to load {name} version {version} from {path}: {err}"
                log.error(message)
                model.failed[version] = fingerprint
                self._set_status(model, version, VersionStatus(
                    END, grpc.StatusCode.UNKNOWN, message))
                self._notify(name, version, "load_failed")
                continue
            with self._lock:
                model.loaded[version] = servable
                model.failed.pop(version, None)
            self._set_status(model, version, VersionStatus(AVAILABLE))
            self._notify(name, version, "loaded")
        aspired_available = aspired & set(model.loaded)
        for version in sorted(set(model.loaded) - aspired):
            deleted = version not in on_disk
            if not aspired_available and not deleted:
                continue  # the replacement failed: keep the old version serving
            self._set_status(model, version, VersionStatus(UNLOADING))
            with self._lock:
                model.loaded.pop(version, None)
            self._set_status(model, version, VersionStatus(END))
            self._notify(name, version, "unloaded")
        with self._lock:  # a failed version pushed again under the same number is retried
            for version in [v for v in model.failed if v not in on_disk]:
                del model.failed[version]

    def _set_status(self, model: _Model, version: int, status: VersionStatus) -> None:
        with self._lock:
            model.status[version] = status

    def _notify(self, name: str, version: int, event: str) -> None:
        log.info("model %s version %d %s", name, version, event)
        if self._on_change is not None:
            self._on_change(name, version, event)

    # --- lookups ------------------------------------------------------------------------
    def model_names(self) -> List[str]:
        with self._lock:
            return sorted(self._models)

    def has_model(self, name: str) -> bool:
        return name in self._models

    def get(self, name: str, version: Optional[int] = None, label: Optional[str] = None):
        """The servable for a request's model spec (latest version when none is given)."""
        with self._lock:
            model = self._models.get(name)
            if model is None:
                raise errors.not_found(f"Servable not found for request: {_spec_str(name, version, label)}")
            if label:
                version = _label_version(model, label)
            if version is None:
                if not model.loaded:
                    raise errors.not_found(f"Servable not found for request: Latest({name})")
                return model.loaded[max(model.loaded)]
            servable = model.loaded.get(version)
            if servable is None:
                raise errors.not_found(f"Servable not found for request: {_spec_str(name, version, None)}")
            return servable

    def label_version(self, name: str, label: str) -> int:
        """The version a label points to (INVALID_ARGUMENT for an unknown label)."""
        with self._lock:
            model = self._models.get(name)
            if model is None:
                raise errors.not_found(f"Servable not found for request: {_spec_str(name, None, label)}")
            return _label_version(model, label)

    def status(self, name: str, version: Optional[int] = None,
               label: Optional[str] = None) -> List[Tuple[int, VersionStatus]]:
        with self._lock:
            model = self._models.get(name)
            if model is None:
                raise errors.not_found(f"Could not find any versions of model {name}")
            if label:
                version = _label_version(model, label)
            if version is not None:
                if version not in model.status:
                    raise errors.not_found(f"Could not find version {version} of model {name}")
                return [(version, model.status[version])]
            if not model.status:
                raise errors.not_found(f"Could not find any versions of model {name}")
            return sorted(model.status.items(), reverse=True)

    def available_versions(self, name: str) -> List[int]:
        with self._lock:
            model = self._models.get(name)
            return sorted(model.loaded) if model else []

    def wait_until_available(self, timeout: float) -> bool:
        """True once every configured model has a loaded version."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self._lock:
                if all(m.loaded for m in self._models.values()):
                    return True
            time.sleep(0.05)
        return False


def _label_version(model: _Model, label: str) -> int:
    if label not in model.config.version_labels:
        raise errors.invalid_argument(f"Unrecognized servable version label: {label}")
    return model.config.version_labels[label]


def _spec_str(name: str, version: Optional[int], label: Optional[str]) -> str:
    if label:
        return f"Specific({name}, label {label})"
    return f"Latest({name})" if version is None else f"Specific({name}, {version})"
