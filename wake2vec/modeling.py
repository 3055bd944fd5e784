"""Load a causal language model and its tokenizer: the one from_pretrained path every model
family uses, with errors a person can act on."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from wake2vec.api import LoadedModel
from wake2vec.errors import UserInputError
from wake2vec.gguf_source import gguf_config, gguf_file, inspect_gguf

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    import torch
    from transformers import PreTrainedModel

DTYPES = ("float32", "bfloat16", "float16")
QUANTIZATIONS = ("none", "nf4")

LORA_CANDIDATES: tuple[str, ...] = (
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
    "qkv_proj",
    "gate_up_proj",
    "c_attn",
    "c_proj",
    "c_fc",
)
"""Module names commonly given to LoRA, across Llama/Mistral/Qwen/Gemma, Phi-3 and GPT-2."""

PLUGIN_HINT = (
    "write a model-family plugin for it (a wake2vec.api.ModelFamily subclass returned by the "
    "wake2vec_register_model_families hook) or upgrade transformers"
)


# --------------------------------------------------------------------------- sources


def _offline() -> bool:
    """Whether the user forbade hub downloads (read at call time, unlike huggingface_hub)."""
    names = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    return any(os.environ.get(n, "").strip().lower() in {"1", "true", "yes", "on"} for n in names)


def _local_dir(source: str) -> Path | None:
    """The local directory ``source`` names, or None when it is a hub id.

    A path that does not exist and cannot be a hub id (``./x``, ``/x``, ``a/b/c``) is an error
    here, not a download attempt."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if not source.strip():
        raise UserInputError("the model name is empty; give a hub id or a model directory")
    path = Path(source).expanduser()
    if path.exists():
        if not path.is_dir():
            raise UserInputError(
                f"model path {source} is a file; give the directory that holds config.json, "
                "or a .gguf file"
            )
        return path
    try:
        validate_repo_id(source)
    except HFValidationError:
        raise UserInputError(f"model directory {source} does not exist") from None
    return None


def _read_config(directory: Path) -> dict:
    """The parsed config.json of a model directory; every defect is a UserInputError."""
    config_path = directory / "config.json"
    if not config_path.is_file():
        raise UserInputError(
            f"{directory} has no config.json, so it is not a saved transformers model "
            "(save one with save_pretrained, or give a hub id)"
        )
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise UserInputError(
            f"{config_path} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserInputError(f"{config_path} cannot be read: {exc}") from None
    if not isinstance(config, dict):
        raise UserInputError(f"{config_path} must hold a JSON object, not {type(config).__name__}")
    return config


def read_model_type(source: str) -> str | None:
    """``model_type`` from a local model directory's config.json; None for a hub id (or an
    empty name, or a config without one). A missing directory or a broken config.json is a
    UserInputError, as it would be when loading."""
    if not source:
        return None
    gguf = gguf_file(source)
    if gguf is not None:
        model_type = gguf_config(gguf).get("model_type")
        return model_type if isinstance(model_type, str) else None
    directory = _local_dir(source)
    if directory is None:
        return None
    model_type = _read_config(directory).get("model_type")
    return model_type if isinstance(model_type, str) else None


def _check_architecture(config: dict, where: str, trust_remote_code: bool) -> None:
    """Refuse a config.json whose model_type transformers cannot build as a causal LM."""
    import transformers
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    if trust_remote_code and "AutoModelForCausalLM" in (config.get("auto_map") or {}):
        return  # the model ships its own code; transformers will import it
    model_type = config.get("model_type")
    if not isinstance(model_type, str) or not model_type:
        raise UserInputError(f'{where} has no "model_type", so its architecture is unknown')
    if model_type not in CONFIG_MAPPING:
        remote = (
            " It names its own code (auto_map): set model.trust_remote_code = true if you trust it."
            if config.get("auto_map")
            else ""
        )
        raise UserInputError(
            f"{where}: model_type {model_type!r} is not an architecture transformers "
            f"{transformers.__version__} knows; {PLUGIN_HINT}.{remote}"
        )
    if model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise UserInputError(
            f"{where}: model_type {model_type!r} is not a causal language model "
            "(transformers has no AutoModelForCausalLM class for it)"
        )


def _check_hub_cache(source: str) -> None:
    """Offline, a hub id must already be in the local cache: say so instead of failing late."""
    from huggingface_hub import try_to_load_from_cache

    if not _offline():
        return
    cached = try_to_load_from_cache(source, "config.json")
    if not isinstance(cached, str):
        raise UserInputError(
            f"model {source!r} is not a local directory and is not in the Hugging Face cache, "
            "and HF_HUB_OFFLINE=1 forbids downloading it; download it once with network access "
            "or give the path of a saved model directory"
        )


def check_source(source: str, trust_remote_code: bool) -> Path | None:
    """Check ``source`` without loading a model: a local directory must hold a config.json
    naming an architecture transformers can build as a causal LM (or, with
    ``trust_remote_code``, its own code); a GGUF file must hold an architecture and
    quantisations transformers can load; offline, a hub id must be cached. Returns the local
    directory (a GGUF file's folder), or None for a hub id (whose config is fetched only when
    loading)."""
    gguf = gguf_file(source)
    if gguf is not None:
        inspect_gguf(gguf, digest=False)
        _check_architecture(gguf_config(gguf), str(gguf), trust_remote_code)
        return gguf.parent
    directory = _local_dir(source)
    if directory is not None:
        _check_architecture(
            _read_config(directory), str(directory / "config.json"), trust_remote_code
        )
    else:
        _check_hub_cache(source)
    return directory


def _hub_config(source: str, trust_remote_code: bool) -> dict:
    """The config of a hub model as a dict, fetched (or read from cache) by transformers."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(source, trust_remote_code=trust_remote_code)
    except OSError as exc:
        raise UserInputError(
            f"model {source!r} is neither a local directory nor a hub model that can be fetched: {exc}"
        ) from None
    except ValueError as exc:  # transformers' word for an unknown model_type
        raise UserInputError(f"model {source!r}: {exc}; {PLUGIN_HINT}") from None
    return config.to_dict()


# --------------------------------------------------------------------------- loading


def torch_dtype(dtype: str) -> torch.dtype:
    """The torch dtype a recipe's ``dtype`` string names."""
    import torch

    if dtype not in DTYPES:
        raise UserInputError(f"unknown dtype {dtype!r} (choose from {', '.join(DTYPES)})")
    return getattr(torch, dtype)


def _quantization_config(quantization: str, dtype: str):
    if quantization not in QUANTIZATIONS:
        raise UserInputError(
            f"unknown quantization {quantization!r} (choose from {', '.join(QUANTIZATIONS)})"
        )
    if quantization == "none":
        return None
    try:
        import bitsandbytes  # noqa: F401
    except Exception as exc:  # ImportError, or a broken native library
        raise UserInputError(
            "quantization 'nf4' needs the bitsandbytes package, which cannot be imported "
            f"({type(exc).__name__}: {exc}); install it with: pip install 'wake2vec[quant]'"
        ) from None
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch_dtype(dtype)
    )


def tie_state(model: PreTrainedModel) -> tuple[bool, str | None]:
    """Whether input and output embeddings are one tensor, and a note when config.json says
    otherwise. The loaded model is the truth: wake2vec never re-ties or unties."""
    config = (
        model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    )
    declared = getattr(config, "tie_word_embeddings", None)
    inputs, outputs = model.get_input_embeddings(), model.get_output_embeddings()
    if outputs is None or getattr(outputs, "weight", None) is None:
        return False, "the model has no output embedding matrix; only input rows are trained"
    shared = outputs.weight is inputs.weight or (
        outputs.weight.data_ptr() == inputs.weight.data_ptr()
        and outputs.weight.shape == inputs.weight.shape
    )
    note = None
    if declared is not None and bool(declared) != shared:
        note = (
            f"config says tie_word_embeddings={declared} but the loaded input and output "
            f"matrices are {'one tensor' if shared else 'separate tensors'}; following the loaded model"
        )
    return shared, note


def find_lora_targets(
    model: PreTrainedModel, candidates: tuple[str, ...] = LORA_CANDIDATES
) -> tuple[str, ...]:
    """Names among ``candidates`` that are linear layers (or GPT-2's Conv1D) in ``model``."""
    from torch import nn
    from transformers.pytorch_utils import Conv1D

    found = {
        name.rsplit(".", 1)[-1]
        for name, module in model.named_modules()
        if isinstance(module, (nn.Linear, Conv1D))
    }
    return tuple(name for name in candidates if name in found)


def load_pretrained(
    source: str,
    *,
    family: str,
    dtype: str,
    quantization: str,
    trust_remote_code: bool,
    lora_targets: tuple[str, ...] | list[str] = (),
    extra: dict | None = None,
    tokenizer_ready: Callable[[Any], None] | None = None,
) -> LoadedModel:
    """Load tokenizer and causal LM from a hub id or a saved directory with from_pretrained.

    ``extra`` holds further keyword arguments for the model's from_pretrained (a family's
    ``attn_implementation``, for instance). ``tokenizer_ready`` is called with the tokenizer
    (a pad token given where it had none) before the model loads."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    quantization_config = _quantization_config(quantization, dtype)
    gguf = gguf_file(source)
    facts = inspect_gguf(gguf) if gguf is not None else None
    directory = check_source(source, trust_remote_code)
    if directory is None:
        _check_architecture(_hub_config(source, trust_remote_code), source, trust_remote_code)
    where = str(directory) if directory is not None else repr(source)
    # a GGUF file loads from its folder with gguf_file=, dequantised to ``dtype``
    load_from, from_gguf = (str(gguf.parent), {"gguf_file": gguf.name}) if gguf else (source, {})
    try:
        tokenizer = AutoTokenizer.from_pretrained(
            load_from, trust_remote_code=trust_remote_code, **from_gguf)
    except (OSError, ValueError) as exc:
        raise UserInputError(f"cannot load a tokenizer from {where}: {exc}") from None
    notes = _fix_padding(tokenizer)
    if tokenizer_ready is not None:
        tokenizer_ready(tokenizer)
    kwargs = {"dtype": torch_dtype(dtype), "trust_remote_code": trust_remote_code, **from_gguf}
    if quantization_config is not None:
        kwargs["quantization_config"] = quantization_config
    kwargs.update(extra or {})
    try:
        model = AutoModelForCausalLM.from_pretrained(load_from, **kwargs)
    except OSError as exc:
        raise UserInputError(f"cannot load model weights from {where}: {exc}") from None
    if gguf is not None:
        _forget_gguf_quantizer(model)
    generation = getattr(model, "generation_config", None)
    if notes and generation is not None and generation.pad_token_id is None:
        generation.pad_token_id = tokenizer.pad_token_id
    notes += _row_notes(model, tokenizer)
    tied, tie_note = tie_state(model)
    if tie_note:
        notes.append(tie_note)
    notes += precision_notes(dtype, quantization)
    if facts is not None:
        notes.append(f"loaded from the GGUF file {gguf.name} ({facts.file_type}, architecture "
                     f"{facts.architecture}), dequantised to {dtype}")
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        source=source,
        family=family,
        tied=tied,
        lora_targets=tuple(lora_targets),
        notes=notes,
        source_file={"gguf": facts.as_dict()} if facts is not None else {},
    )


def _forget_gguf_quantizer(model: Any) -> None:
    """A model read from GGUF holds plain dequantised tensors, but transformers keeps its GGUF
    quantizer on it, which refuses save_pretrained; drop it so the model saves and trains like
    one loaded from safetensors."""
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer = None
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "quantization_config"):
        del config.quantization_config


def cpu_has_native_bf16(cpuinfo: str | None = None) -> bool | None:
    """Whether this CPU multiplies bf16 matrices natively (x86 AVX512-BF16 or AMX, Arm BF16), read
    from ``/proc/cpuinfo``; None where that cannot be told."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None
    flags = set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags.update(value.split())
    if not flags:
        return None
    return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})


def precision_notes(dtype: str, quantization: str, cpuinfo: str | None = None) -> list[str]:
    """A note when a bf16 model will train on a CPU that emulates bf16 products (several times
    slower than fp32 there; ``benchmarks/README.md`` has the measurements)."""
    import torch

    if dtype != "bfloat16" or quantization != "none" or torch.cuda.is_available():
        return []
    if cpu_has_native_bf16(cpuinfo) is not False:
        return []
    return ['this CPU has no native bf16 matrix products (no AVX512-BF16 or AMX), so bf16 runs '
            'emulated and slower than fp32 here; model.dtype = "float32" trains faster on it']


def _fix_padding(tokenizer) -> list[str]:
    """Give a tokenizer without a pad token its eos token for padding (the caller then gives
    the model's generation config the same pad id)."""
    if tokenizer.pad_token is not None:
        return []
    if tokenizer.eos_token is None:
        return ["the tokenizer has neither a pad nor an eos token; batches cannot be padded"]
    tokenizer.pad_token = tokenizer.eos_token
    return [f"the tokenizer had no pad token; padding with eos {tokenizer.eos_token!r}"]


def _row_notes(model: PreTrainedModel, tokenizer) -> list[str]:
    """Say when the embedding matrix and the tokenizer disagree in size."""
    rows, entries = model.get_input_embeddings().weight.shape[0], len(tokenizer)
    if rows > entries:
        return [
            f"the embedding matrix has {rows} rows for {entries} tokenizer entries; "
            f"rows {entries}..{rows - 1} are padding"
        ]
    if rows < entries:
        return [f"the tokenizer has {entries} entries but the embedding matrix only {rows} rows"]
    return []
