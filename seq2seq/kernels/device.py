"""Where and in what precision a model runs: the device, torch's threads, autocast."""

import copy
import weakref
from typing import Callable, Tuple

import torch

from seq2seq.errors import UserError


def pick_device(name: str) -> torch.device:
    """``auto`` (CUDA when torch sees a GPU, else the CPU), ``cpu``, ``cuda`` or ``cuda:N``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError("device cuda requested but torch sees no GPU (use --device cpu)")
    return torch.device(name)


def set_threads(n: int) -> None:
    """Use ``n`` torch threads (0: leave torch's default, one per core)."""
    if n:
        torch.set_num_threads(n)


def native_bf16(device: torch.device) -> bool:
    """True where bf16 products run in hardware: a CUDA GPU with bf16, or a CPU whose flags
    (Linux ``/proc/cpuinfo``) include AVX-512 BF16 or AMX-BF16. Elsewhere torch emulates bf16
    on the CPU, slower than float32."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            flags = next((line.split(":", 1)[1].split() for line in f
                          if line.startswith("flags")), [])
    except OSError:
        return False
    return bool({"avx512_bf16", "amx_bf16"} & set(flags))


def resolve_amp(amp: str, device: torch.device) -> str:
    """``train.amp`` with ``auto`` made ``bf16`` where :func:`native_bf16`, else ``none``."""
    if amp != "auto":
        return amp
    return "bf16" if native_bf16(device) else "none"


def mixed_precision(amp: str, device: torch.device
                    ) -> Tuple[Callable[[], torch.autocast], torch.amp.GradScaler]:
    """``(autocast context factory, grad scaler)`` for ``train.amp`` (none | bf16 | fp16;
    ``auto``: see :func:`resolve_amp`)."""
    amp = resolve_amp(amp, device)
    if amp == "fp16" and device.type != "cuda":
        raise UserError("train.amp=fp16 needs a CUDA device; use bf16 on a CPU")
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)

    def autocast() -> torch.autocast:
        return torch.autocast(device.type, dtype=dtype or torch.float32,
                              enabled=dtype is not None)

    return autocast, torch.amp.GradScaler(device.type, enabled=amp == "fp16")


def bf16_autocast(device, enabled: bool) -> torch.autocast:
    """Decoding under bfloat16 autocast (``translate --bf16``) when ``enabled``."""
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=enabled)


_BF16_COPIES: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def bf16_weights(model: torch.nn.Module) -> torch.nn.Module:
    """For decoding with ``--bf16``: a copy of ``model`` with bfloat16 weights, run under
    :func:`bf16_autocast` (which keeps softmax and the like in float32).

    Autocast alone casts the float32 weights again at every step, which on the Intel Xeon this
    project measures on makes it no faster than float32 (0.97x, greedy, test_2016_flickr); with
    the weights cast once it is 1.5x faster, at the same BLEU. The copy is kept while the model
    lives and made again when its weights change: in place (an optimizer step,
    ``load_state_dict``: the versions move) or replaced (``.data`` swapped, as
    :meth:`seq2seq.training.ema.WeightAverage.applied` does, or moved: the storage moves).
    """
    params = list(model.parameters())
    if any(p.is_inference() for p in params):  # no version counter to tell a change by
        return copy.deepcopy(model).to(torch.bfloat16).eval()
    key = tuple((p.data_ptr(), p.device, p.dtype, p._version) for p in params)
    hit = _BF16_COPIES.get(model)
    if hit is not None and hit[0] == key:
        return hit[1]
    low = copy.deepcopy(model).to(torch.bfloat16).eval()
    _BF16_COPIES[model] = (key, low)
    return low
