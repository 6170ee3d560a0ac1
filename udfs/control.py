"""The ``model-updates`` control contract: which model versions serve, and which users each serves.

An announcement is one JSON object on the control topic:

    {"name": "sasrec", "version": "v3", "uri": "file:///srv/registry/sasrec/v3", "sha256": "<64 hex>",
     "arms": {"control": {"model": "sasrec/v2", "share": 0.9},
              "treatment": {"model": "sasrec/v3", "share": 0.1}},      # optional
     "salt": "exp-7"}                                                    # optional

* ``name``/``version``/``uri``/``sha256`` announce a version (``models.registry publish`` prints them).
  Without ``arms`` it takes all traffic, as the single arm ``main``.
* ``arms`` splits traffic: each arm names a version announced now or before (or carries its own
  ``uri`` and ``sha256``) and a share; shares are in (0, 1] and sum to 1. A record with only ``arms``
  (and ``salt``) changes the split of versions already announced.
* A user's arm is a salted hash of the user id (`Serving.assign`): stable while the split and
  salt stay, spread uniformly; a new salt reshuffles users.

Pure logic: parsing, validation and assignment, usable without Flink or a model.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from typing import Any, Mapping

from udfs.errors import InvalidRecord
from udfs.records import Reason

STEP = "parse model-update"
DEFAULT_ARM = "main"
SHARE_TOLERANCE = 1e-6
MAX_ARMS = 16
_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_TOP_KEYS = {"name", "version", "uri", "sha256", "arms", "salt"}
_ARM_KEYS = {"model", "share", "uri", "sha256"}


def _bad(detail: str, reason: Reason) -> InvalidRecord:
    return InvalidRecord(STEP, detail, reason.value)


@dataclass(frozen=True)
class ModelRef:
    """A servable version: ``name/version``, where its files are, and their checksum."""

    model: str
    uri: str
    sha256: str | None = None


@dataclass(frozen=True)
class Arm:
    name: str
    model: str  # name/version
    share: float


@dataclass(frozen=True)
class Serving:
    """What should serve: the known versions and the traffic split over them."""

    models: Mapping[str, ModelRef]
    arms: tuple[Arm, ...]  # in arm-name order; shares sum to 1
    salt: str = ""

    @staticmethod
    def single(ref: ModelRef) -> Serving:
        return Serving({ref.model: ref}, (Arm(DEFAULT_ARM, ref.model, 1.0),))

    @property
    def active_models(self) -> list[str]:
        """The versions that take traffic (the ones that must be loaded), in arm order, unique."""
        return list(dict.fromkeys(a.model for a in self.arms))

    def assign(self, user_id: str) -> Arm:
        """The user's arm: a uniform point in [0, 1) from a salted hash, against the cumulative shares."""
        digest = hashlib.blake2b(f"{self.salt}\x00{user_id}".encode("utf-8", "surrogatepass"), digest_size=8).digest()
        point = int.from_bytes(digest, "big") / 2.0**64
        total = 0.0
        for arm in self.arms:
            total += arm.share
            if point < total:
                return arm
        return self.arms[-1]  # shares sum to 1 within tolerance: the rounding gap belongs to the last arm

    def to_json(self) -> str:
        return json.dumps({"models": {k: vars(v) for k, v in self.models.items()},
                           "arms": [vars(a) for a in self.arms], "salt": self.salt}, sort_keys=True)

    @staticmethod
    def from_json(text: str) -> Serving:
        data = json.loads(text)
        return Serving({k: ModelRef(**v) for k, v in data["models"].items()},
                       tuple(Arm(**a) for a in data["arms"]), data.get("salt", ""))


def _text(obj: Mapping[str, Any], key: str, pattern: re.Pattern | None = None) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value:
        raise _bad(f"'{key}' must be a non-empty string, got {value!r:.80}", Reason.WRONG_TYPE)
    if pattern is not None and not pattern.match(value):
        raise _bad(f"'{key}' {value!r:.80} does not match {pattern.pattern}", Reason.WRONG_TYPE)
    return value


def _model_ref(obj: Mapping[str, Any], model: str) -> ModelRef:
    sha = obj.get("sha256")
    if sha is not None:
        sha = _text(obj, "sha256", _SHA256)
    return ModelRef(model, _text(obj, "uri"), sha)


def apply_announcement(current: Serving, payload: bytes | str) -> Serving:
    """The serving set after one announcement, or InvalidRecord naming what is wrong.

    Structural checks only (shape, names, shares, references); whether the files load and score is
    checked when the version is loaded (`udfs.serving`).
    """
    try:
        obj = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _bad(f"not JSON: {exc}", Reason.BAD_JSON) from exc
    if not isinstance(obj, dict):
        raise _bad(f"expected a JSON object, got {type(obj).__name__}", Reason.NOT_OBJECT)
    extra = sorted(set(obj) - _TOP_KEYS)
    if extra:
        raise _bad(f"unknown fields {extra} (allowed: {sorted(_TOP_KEYS)})", Reason.UNKNOWN_FIELD)
    models = dict(current.models)
    announced = None
    if any(k in obj for k in ("name", "version", "uri", "sha256")):
        announced = f"{_text(obj, 'name', _SEGMENT)}/{_text(obj, 'version', _SEGMENT)}"
        models[announced] = _model_ref(obj, announced)
    elif "arms" not in obj:
        raise _bad("an announcement needs name, version and uri, or arms", Reason.MISSING_FIELD)
    salt = obj.get("salt", current.salt)
    if not isinstance(salt, str) or len(salt) > 256:
        raise _bad(f"'salt' must be a string of at most 256 characters, got {salt!r:.80}", Reason.WRONG_TYPE)
    if "arms" not in obj:
        return Serving(models, (Arm(DEFAULT_ARM, announced, 1.0),), salt)
    arms_obj = obj["arms"]
    if not isinstance(arms_obj, dict) or not arms_obj:
        raise _bad(f"'arms' must be a non-empty object, got {arms_obj!r:.80}", Reason.WRONG_TYPE)
    if len(arms_obj) > MAX_ARMS:
        raise _bad(f"{len(arms_obj)} arms; at most {MAX_ARMS}", Reason.WRONG_TYPE)
    arms = []
    for name in sorted(arms_obj):
        spec = arms_obj[name]
        if not _SEGMENT.match(name):
            raise _bad(f"arm name {name!r:.80} does not match {_SEGMENT.pattern}", Reason.WRONG_TYPE)
        if not isinstance(spec, dict):
            raise _bad(f"arm {name!r} must be an object, got {spec!r:.80}", Reason.WRONG_TYPE)
        extra = sorted(set(spec) - _ARM_KEYS)
        if extra:
            raise _bad(f"arm {name!r}: unknown fields {extra} (allowed: {sorted(_ARM_KEYS)})", Reason.UNKNOWN_FIELD)
        model = _text(spec, "model")
        if model.count("/") != 1 or not all(_SEGMENT.match(p) for p in model.split("/")):
            raise _bad(f"arm {name!r}: model {model!r:.80} is not NAME/VERSION", Reason.WRONG_TYPE)
        if "uri" in spec:
            models[model] = _model_ref(spec, model)
        elif model not in models:
            raise _bad(f"arm {name!r}: model {model!r} was never announced and has no uri", Reason.UNKNOWN_MODEL)
        share = spec.get("share")
        if isinstance(share, bool) or not isinstance(share, (int, float)) or not math.isfinite(share) \
                or not 0 < share <= 1:
            raise _bad(f"arm {name!r}: share must be a number in (0, 1], got {share!r:.40}", Reason.BAD_SHARE)
        arms.append(Arm(name, model, float(share)))
    total = math.fsum(a.share for a in arms)
    if abs(total - 1.0) > SHARE_TOLERANCE:
        raise _bad(f"arm shares sum to {total:.6g}, not 1", Reason.BAD_SHARE)
    return Serving(models, tuple(arms), salt)
