"""The ``--precision`` setting and the choice ``auto`` makes: plain data, no TensorFlow or Keras.

Almost all the time a user waits on is the VGG-16 trunk (feature extraction, predict, serve,
Grad-CAM, the export check). CPUs with AVX512-BF16 or AMX-BF16 instructions run its convolutions in
bfloat16 several times faster than in float32, with pooled features within about 1% of the
float32 ones; a GPU runs them fastest in float16. :func:`choose_precision` turns the setting
(``auto``, ``float32``, ``bfloat16``, ``float16``) into a :class:`Precision`, a pure function of
the text of ``/proc/cpuinfo`` and whether a GPU is visible: ``auto`` is float16 when TensorFlow
sees a GPU (the convolutions run there), else bfloat16 when the CPU flags list ``amx_bf16`` or
``avx512_bf16``, float32 otherwise, with the reason said in one line (``precision: bfloat16
(auto: CPU has avx512_bf16)``). :func:`skin_cnn.models.precision_policy.resolve_precision`
asks this machine and :func:`~skin_cnn.models.precision_policy.apply_precision` sets the
trunk's Keras dtype policies.

The command line reads :data:`PRECISIONS` from here to show ``--help`` without loading
TensorFlow.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

#: Values of the ``--precision`` setting.
PRECISIONS = ("auto", "float32", "bfloat16", "float16")
#: The Keras dtype policy of the trunk layers for each resolved precision.
POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}
#: CPU flags (``/proc/cpuinfo``) of instructions that compute in bfloat16, strongest first.
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")
CPUINFO = Path("/proc/cpuinfo")


@dataclass(frozen=True)
class Precision:
    """A resolved precision and why it was chosen.

    Attributes
    ----------
    name : {"float32", "bfloat16", "float16"}
        What the trunk computes in.
    requested : str
        The setting it came from (``auto`` or the name itself).
    reason : str
        Why, for people: ``auto: CPU has avx512_bf16``, ``auto: no amx_bf16 or avx512_bf16 in
        /proc/cpuinfo and no GPU``, ``set``.
    recorded : bool
        Read back from a run's record (a resumed run keeps its precision), not chosen now.
    """

    name: str
    requested: str = "auto"
    reason: str = "set"
    recorded: bool = False

    def __post_init__(self):
        if self.name not in POLICIES:
            raise ValueError(f"precision must be one of {', '.join(POLICIES)}; got {self.name!r}")

    @property
    def policy(self):
        """The Keras dtype policy name of the trunk layers."""
        return POLICIES[self.name]

    def describe(self):
        """The line every command prints once: ``precision: bfloat16 (auto: CPU has avx512_bf16)``."""
        return f"precision: {self.name} ({self.reason}{'; recorded in the run' if self.recorded else ''})"

    def to_dict(self):
        """``{"precision", "requested", "reason"}`` for ``config.json`` (:meth:`from_record` reads it back)."""
        return {"precision": self.name, "requested": self.requested, "reason": self.reason}

    @classmethod
    def from_record(cls, entry, source="recorded precision"):
        """The precision a run recorded with :meth:`to_dict`, said to be recorded (resumed runs keep it).

        None (a run recorded before the setting existed) is float32, what such runs computed in.
        """
        if entry is None:
            return cls("float32", "float32", "the run predates precision settings", recorded=True)
        if not isinstance(entry, dict) or entry.get("precision") not in POLICIES:
            raise ValueError(f"{source}: not a recorded precision ({entry!r})")
        return cls(entry["precision"], str(entry.get("requested", entry["precision"])),
                   str(entry.get("reason") or "set"), recorded=True)


def check_precision(value, source="precision"):
    """``value`` lower-cased when it is one of :data:`PRECISIONS`; else a ValueError naming ``source``."""
    text = str(value).strip().lower()
    if text not in PRECISIONS:
        raise ValueError(f"{source}: {value!r} is not a precision; expected one of {', '.join(PRECISIONS)}")
    return text


def cpu_flags(cpuinfo_text):
    """The set of CPU feature flags in the text of ``/proc/cpuinfo`` (``flags`` lines; ARM's ``Features``)."""
    flags = set()
    for line in cpuinfo_text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() in ("flags", "features"):
            flags.update(value.split())
    return flags


def bf16_flags(cpuinfo_text):
    """Which of :data:`BF16_CPU_FLAGS` the CPU has, strongest first (empty: none)."""
    flags = cpu_flags(cpuinfo_text)
    return tuple(flag for flag in BF16_CPU_FLAGS if flag in flags)


def choose_precision(requested, cpuinfo_text, has_gpu):
    """The :class:`Precision` for a setting on a machine described by its cpuinfo text and GPU.

    A pure function, so the choice of ``auto`` is testable with any CPU's text.

    Parameters
    ----------
    requested : str
        One of :data:`PRECISIONS`.
    cpuinfo_text : str
        The text of ``/proc/cpuinfo`` ("" where there is none: macOS, Windows).
    has_gpu : bool
        Whether TensorFlow sees a GPU.
    """
    requested = check_precision(requested)
    if requested != "auto":
        return Precision(requested, requested, "set")
    if has_gpu:  # TensorFlow places the convolutions on the GPU
        return Precision("float16", "auto", "auto: a GPU is visible")
    found = bf16_flags(cpuinfo_text)
    if found:
        return Precision("bfloat16", "auto", f"auto: CPU has {found[0]}")
    where = "in /proc/cpuinfo" if cpuinfo_text else "(no /proc/cpuinfo to read)"
    return Precision("float32", "auto", f"auto: no amx_bf16 or avx512_bf16 {where} and no GPU")


def cpu_description(cpuinfo_text=None):
    """One line for benchmark output: the CPU model, how many logical CPUs, and its bf16 flags."""
    text = read_cpuinfo() if cpuinfo_text is None else cpuinfo_text
    model = next((line.partition(":")[2].strip() for line in text.splitlines()
                  if line.lower().startswith("model name")), "unknown CPU")
    count = sum(1 for line in text.splitlines() if line.lower().startswith("processor"))
    flags = cpu_flags(text)
    listed = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile") if f in flags]
    missing = [f for f in BF16_CPU_FLAGS if f not in flags]
    return (f"{model} ({count} logical CPUs); flags: {' '.join(listed) or 'none of avx2/avx512'}"
            + (f"; no {', no '.join(missing)}" if missing else ""))


def read_cpuinfo(path=CPUINFO):
    """The text of ``/proc/cpuinfo``, or "" where it cannot be read."""
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
