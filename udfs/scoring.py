"""The vectorized (pandas) scoring UDF: one ONNX Runtime call per Arrow batch."""
from __future__ import annotations

import ctypes
import functools
import logging
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from pyflink.table import DataTypes
from pyflink.table.udf import FunctionContext, ScalarFunction, udf

# At module level, so the registry's checks load with the scorer rather than at the first live swap
# (see udfs.LivePackagePath for why late imports in thread mode once failed).
from models.artifact import STATE_OUTPUT
from models.errors import ArtifactError
from models.registry import local_path, validate_version
from udfs.content import TextProjection
from udfs.features import OOV, FeatureEncoder, ModelInputs
from udfs.trending import BlendParams

log = logging.getLogger(__name__)


_PROVIDER_LIBRARIES = {"CUDAExecutionProvider": "libonnxruntime_providers_cuda.so",
                       "TensorrtExecutionProvider": "libonnxruntime_providers_tensorrt.so"}


@functools.lru_cache(maxsize=None)
def _provider_loads(provider: str) -> bool:
    """Whether ONNX Runtime's library for `provider` and everything it links (CUDA, cuBLAS, cuDNN) load.

    onnxruntime-gpu lists CUDA as available wherever it is installed; asking for it on a machine
    without the CUDA libraries prints a loud error and then runs on CPU anyway.
    """
    library = _PROVIDER_LIBRARIES.get(provider)
    if library is None:
        return True
    import onnxruntime as ort

    capi = Path(ort.__file__).parent / "capi"
    try:
        ctypes.CDLL(str(capi / "libonnxruntime_providers_shared.so"), mode=ctypes.RTLD_GLOBAL)
        ctypes.CDLL(str(capi / library))
    except OSError as exc:
        log.debug("%s cannot load here: %s", provider, exc)
        return False
    return True


def usable_providers(requested: Sequence[str]) -> list[str]:
    """The requested execution providers that can run on this machine, in order; CPU at worst."""
    import onnxruntime as ort

    available = set(ort.get_available_providers())
    return [p for p in requested if p in available and _provider_loads(p)] or ["CPUExecutionProvider"]


class OnnxScorer:
    """An ONNX ranking model plus its vocabulary; scores encoded batches. Usable without Flink."""

    def __init__(self, model_dir: str, providers: Sequence[str], threads: int = 1, int8: bool = False) -> None:
        import onnxruntime as ort  # imported here: Flink workers import this module before open()

        from models.artifact import load_artifact
        from models.errors import ArtifactError

        self.artifact = load_artifact(model_dir)
        self.version = f"{self.artifact.name}/{self.artifact.version}"
        self.encoder = FeatureEncoder(self.artifact.item_to_index, self.artifact.event_to_index,
                                      self.artifact.max_len)
        onnx_path = self.artifact.int8_onnx_path if int8 else self.artifact.onnx_path
        if onnx_path is None:
            raise ArtifactError(f"{model_dir} has no int8 model file")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        wanted = usable_providers(providers)
        try:
            self.session = ort.InferenceSession(str(onnx_path), options, providers=wanted)
        except Exception as exc:  # ORT raises its own pybind exception types for unreadable models
            raise ArtifactError(f"cannot load {onnx_path}: {exc}") from exc
        log.info("model %s%s loaded from %s on %s", self.version, " (int8)" if int8 else "", model_dir,
                 ", ".join(self.session.get_providers()))
        # A content-aware model (config "text" + a user_state output) scores items outside its
        # vocabulary from their text embeddings (udfs.content); an ID-only model has neither.
        has_state = STATE_OUTPUT in {o.name for o in self.session.get_outputs()}
        self.projection = TextProjection.load(model_dir, self.artifact.config) if has_state else None
        self._outputs = ["scores", STATE_OUTPUT] if self.projection is not None else ["scores"]
        # How this model's scores blend with item trends (tuned for it: models/temporal.py); a bad
        # file refuses the model like any other broken artifact part.
        try:
            self.blend = BlendParams.load(model_dir)
        except ValueError as exc:
            raise ArtifactError(str(exc)) from exc

    ref = None  # the udfs.control.ModelRef it was loaded for (load_validated)

    def run(self, inputs: ModelInputs) -> np.ndarray:
        """scores: (B, C) float32; columns past a row's n_candidates are padding."""
        return self.session.run(["scores"], {
            "hist_items": inputs.hist_items,
            "hist_events": inputs.hist_events,
            "candidates": inputs.candidates,
        })[0]

    def score(self, hist_items: Sequence[Sequence[str]], hist_events: Sequence[Sequence[str]],
              candidates: Sequence[Sequence[str]]) -> list[np.ndarray]:
        """One float32 array of scores per row, aligned with that row's candidates."""
        inputs = self.encoder.encode(hist_items, hist_events, candidates)
        scores = self.run(inputs)
        return [scores[b, :n] for b, n in enumerate(inputs.n_candidates)]

    def score_one(self, hist_items: Sequence[str], hist_events: Sequence[str], candidates: Sequence[str]) -> np.ndarray:
        """Scores of one request's candidates: (C,) float32."""
        return self.score([hist_items], [hist_events], [candidates])[0]

    def score_request(self, hist_items: Sequence[str], hist_events: Sequence[str], candidates: Sequence[str]
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """One request: scores (C,) float32, is_oov (C,) bool (outside the vocabulary) and the
        user_state (D,) of a content-aware model (None for an ID-only one). One ORT call either way:
        user_state is an output of the same graph."""
        inputs = self.encoder.encode([hist_items], [hist_events], [candidates])
        out = self.session.run(self._outputs, {"hist_items": inputs.hist_items, "hist_events": inputs.hist_events,
                                               "candidates": inputs.candidates})
        n = int(inputs.n_candidates[0])
        state = out[1][0] if len(out) > 1 else None
        return out[0][0, :n], inputs.candidates[0, :n] == OOV, state


def load_validated(ref, providers: Sequence[str], threads: int = 1, int8: bool = False) -> OnnxScorer:
    """The scorer of an announced version (`udfs.control.ModelRef`), after every publish check.

    Checksum against the announcement, artifact consistency, ONNX contract and a canary batch on the
    very session that will serve (`models.registry.validate_version`), and the artifact must be the
    version the announcement names.
    """
    path = local_path(ref.uri)
    if not path.is_dir():
        raise ArtifactError(f"{ref.model}: {ref.uri} is not a directory")
    scorer = OnnxScorer(str(path), providers, threads, int8)
    validate_version(path, ref.sha256, session=scorer.session)
    if scorer.version != ref.model:
        raise ArtifactError(f"{ref.uri} holds {scorer.version}, the announcement says {ref.model}")
    scorer.ref = ref
    return scorer


class RankScorer(ScalarFunction):
    """pandas UDF: (hist_items, hist_events, candidates) Series -> Series of score arrays.

    Holds only strings when pickled; the ONNX session is created in `open()` on the worker.
    A batch that fails to score yields null scores (the ranked list falls back to request order
    and is flagged), so a model fault never kills the job or drops requests.
    """

    def __init__(self, model_dir: str, providers: Sequence[str], threads: int) -> None:
        self.model_dir = model_dir
        self.providers = list(providers)
        self.threads = threads
        self.scorer: OnnxScorer | None = None

    def open(self, function_context: FunctionContext) -> None:
        self.scorer = OnnxScorer(self.model_dir, self.providers, self.threads)
        group = function_context.get_metric_group().add_group("rerank")
        self.batches = group.counter("scoring_batches")
        self.failures = group.counter("scoring_failures")
        # PyFlink has no Python histogram; totals give the means in Prometheus:
        # rate(scoring_ms) / rate(scoring_batches), rate(scored_rows) / rate(scoring_batches).
        self.rows = group.counter("scored_rows")
        self.total_ms = group.counter("scoring_ms")
        # The model in use, as a label: ..._rerank_model_version_model_loaded{model_version="sasrec/v1"} 1
        group.add_group("model_version", self.scorer.version).gauge("model_loaded", lambda: 1)
        self.last_batch_rows = 0
        self.last_batch_ms = 0.0
        group.gauge("scoring_batch_rows", lambda: self.last_batch_rows)
        group.gauge("scoring_batch_ms", lambda: int(self.last_batch_ms))

    def eval(self, hist_items: pd.Series, hist_events: pd.Series, candidates: pd.Series) -> pd.Series:
        start = time.perf_counter()
        try:
            rows = self.scorer.score(hist_items.tolist(), hist_events.tolist(), candidates.tolist())
        except Exception:  # noqa: BLE001 - any model/runtime fault: log, count, serve fallback lists
            log.exception("scoring a batch of %d rows failed; emitting fallback lists", len(candidates))
            self.failures.inc()
            rows = [None] * len(candidates)
        self.batches.inc()
        self.last_batch_rows = len(candidates)
        self.last_batch_ms = (time.perf_counter() - start) * 1000
        self.rows.inc(len(candidates))
        self.total_ms.inc(int(round(self.last_batch_ms)))
        return pd.Series([None if r is None else r.astype(np.float32) for r in rows])


def rank_scorer(model_dir: str, providers: Sequence[str], threads: int = 1):
    """The UDF object to call in the Table API: rank_scorer(...)(col_h, col_e, col_c)."""
    return udf(RankScorer(model_dir, providers, threads),
               result_type=DataTypes.ARRAY(DataTypes.FLOAT()), func_type="pandas")
