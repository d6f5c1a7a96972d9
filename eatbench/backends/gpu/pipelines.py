"""Text-to-image pipelines for the gpu backend: load from local files, or build with random weights.

Nothing here downloads. ``resolve_model_path`` turns a directory or a Hugging Face repo id
into a local directory (the HF cache with ``local_files_only=True``) or raises
``ModelNotFoundError`` with a clear message; it is called by the backend *before* any
worker starts. ``build_random_pipeline`` builds the real SD-1.5 or SDXL architecture (or a
tiny one for tests) from configs with random weights, so latency is real while image
quality is meaningless (the backend then reports quality as ``None``).

torch, diffusers and transformers are imported inside the functions, never at import time.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

RANDOM_INIT_CHOICES = ("sd15", "sdxl", "tiny", "tiny-sdxl")
DTYPES = ("fp32", "fp16", "bf16")


class ModelNotFoundError(FileNotFoundError):
    """The requested model weights are not available locally."""


def torch_dtype(name: str) -> Any:
    """Map ``"fp32" | "fp16" | "bf16"`` to a torch dtype."""
    import torch

    table = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    if name not in table:
        raise ValueError(f"dtype={name!r} is invalid; allowed: {', '.join(DTYPES)}")
    return table[name]


def resolve_model_path(model_path: str, field: str = "backend.model_path") -> str:
    """Return a local directory holding a diffusers pipeline (``model_index.json``).

    :param model_path: a local directory, or a Hugging Face repo id that must already be
        in the local cache (looked up with ``local_files_only=True``; nothing downloads).
    :param field: the config field named in error messages.
    :raises ModelNotFoundError: when neither exists locally; the message has the form
        ``<field>='...' is invalid; allowed: ...``.
    """
    allowed = (
        "allowed: a local directory saved with save_pretrained() (with model_index.json), a repo id "
        "already in the local Hugging Face cache, or null with backend.random_init=sd15|sdxl|tiny"
    )
    path = Path(os.path.expanduser(str(model_path)))
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            raise ModelNotFoundError(
                f"{field}={str(model_path)!r} is invalid (a directory without model_index.json); {allowed}"
            )
        return str(path)
    model_path = str(model_path)
    looks_like_repo = model_path.count("/") == 1 and not model_path.startswith((".", "/", "~"))
    if looks_like_repo:
        try:
            from huggingface_hub import snapshot_download

            local = snapshot_download(model_path, local_files_only=True)
        except Exception as exc:  # noqa: BLE001 - hub raises several kinds
            raise ModelNotFoundError(
                f"{field}={model_path!r} is invalid (neither a local directory nor a repo in the "
                f"local Hugging Face cache: {type(exc).__name__}; nothing is downloaded); {allowed}"
            ) from None
        if (Path(local) / "model_index.json").is_file():
            return local
    raise ModelNotFoundError(
        f"{field}={model_path!r} is invalid (it does not exist locally; nothing is downloaded); {allowed}"
    )


def _bytes_to_unicode() -> list[str]:
    """The CLIP/GPT-2 byte alphabet (256 printable characters)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def make_byte_tokenizer(model_max_length: int = 77) -> Any:
    """A CLIP tokenizer with a byte-level vocabulary (517 tokens), built offline.

    Good enough to drive a random-weight text encoder: prompt length and cost are real,
    the token ids are not CLIP's.
    """
    from transformers import CLIPTokenizer

    chars = _bytes_to_unicode()
    vocab = {c: i for i, c in enumerate(chars)}
    for c in chars:
        vocab[c + "</w>"] = len(vocab)
    merges = ["#version: 0.2", "a t</w>", "c a", "ca t</w>"]
    for m in merges[1:]:
        vocab.setdefault("".join(m.split()), len(vocab))
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    with tempfile.TemporaryDirectory() as tmp:
        with open(f"{tmp}/vocab.json", "w") as f:
            json.dump(vocab, f)
        with open(f"{tmp}/merges.txt", "w") as f:
            f.write("\n".join(merges) + "\n")
        return CLIPTokenizer(f"{tmp}/vocab.json", f"{tmp}/merges.txt", model_max_length=model_max_length)


def _text_config(tok: Any, **kw: Any) -> Any:
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=max(len(tok), kw.pop("vocab_size", 0)),
        max_position_embeddings=77,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        **kw,
    )


def unet_config(arch: str) -> dict[str, Any]:
    """UNet2DConditionModel keyword arguments for ``arch`` (``sd15``, ``sdxl``, ``tiny``)."""
    if arch == "sd15":  # the diffusers defaults are the SD-1.x UNet (859.5 M parameters)
        return {"sample_size": 64, "cross_attention_dim": 768}
    if arch == "sdxl":  # SDXL base UNet (2.57 B parameters)
        return {
            "sample_size": 128,
            "down_block_types": (
                "DownBlock2D",
                "CrossAttnDownBlock2D",
                "CrossAttnDownBlock2D",
            ),
            "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
            "block_out_channels": (320, 640, 1280),
            "layers_per_block": 2,
            "cross_attention_dim": 2048,
            "transformer_layers_per_block": (1, 2, 10),
            "attention_head_dim": (5, 10, 20),
            "use_linear_projection": True,
            "addition_embed_type": "text_time",
            "addition_time_embed_dim": 256,
            "projection_class_embeddings_input_dim": 2816,
        }
    if arch == "tiny":
        return {
            "block_out_channels": (32, 64),
            "layers_per_block": 2,
            "sample_size": 32,
            "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D"),
            "up_block_types": ("CrossAttnUpBlock2D", "UpBlock2D"),
            "cross_attention_dim": 32,
            "norm_num_groups": 32,
        }
    if arch == "tiny-sdxl":  # the SDXL pipeline glue (two text towers, text_time) at tiny size
        return {
            **unet_config("tiny"),
            "cross_attention_dim": 64,  # 32 + 32: both text towers' hidden states
            "addition_embed_type": "text_time",
            "addition_time_embed_dim": 8,
            "projection_class_embeddings_input_dim": 8 * 6 + 32,
        }
    raise ValueError(f"random_init={arch!r} is invalid; allowed: {', '.join(RANDOM_INIT_CHOICES)}")


def _vae(arch: str) -> Any:
    from diffusers import AutoencoderKL

    if arch.startswith("tiny"):
        return AutoencoderKL(
            block_out_channels=[32, 64],
            down_block_types=["DownEncoderBlock2D"] * 2,
            up_block_types=["UpDecoderBlock2D"] * 2,
            latent_channels=4,
            norm_num_groups=32,
            sample_size=64,
        )
    return AutoencoderKL(  # the SD / SDXL VAE (83.7 M parameters)
        block_out_channels=[128, 256, 512, 512],
        down_block_types=["DownEncoderBlock2D"] * 4,
        up_block_types=["UpDecoderBlock2D"] * 4,
        layers_per_block=2,
        latent_channels=4,
        sample_size=1024 if arch == "sdxl" else 512,
        scaling_factor=0.13025 if arch == "sdxl" else 0.18215,
    )


@contextlib.contextmanager
def default_dtype(dtype: Any) -> Iterator[None]:
    """Create floating-point tensors in ``dtype`` inside the block (torch's default dtype)."""
    import torch

    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def build_random_pipeline(arch: str, device: str = "cpu", seed: int = 0, dtype: str = "fp32") -> Any:
    """Build a text-to-image pipeline of architecture ``arch`` with random weights.

    :param arch: ``sd15`` (StableDiffusionPipeline, SD-1.5 sizes, PNDM scheduler as the
        released SD-1.5), ``sdxl`` (StableDiffusionXLPipeline, SDXL-base sizes, Euler),
        ``tiny`` (a 2 M-parameter SD pipeline for tests, DDIM; 64 px images take
        ~0.04-0.07 s per step on one CPU core) or ``tiny-sdxl`` (the SDXL pipeline's
        structure at tiny size, for tests).
    :param device: where parameters are created (building on the GPU is much faster).
    :param seed: torch seed for the weights (same seed, device kind and dtype: same weights).
    :param dtype: ``fp32``, ``fp16`` or ``bf16``: every parameter is *created* in this
        dtype (no fp32 copy is ever made, so no fp32-sized block stays reserved).
    :returns: the pipeline in ``dtype`` on ``device``.
    """
    import torch
    from diffusers import (
        DDIMScheduler,
        EulerDiscreteScheduler,
        PNDMScheduler,
        StableDiffusionPipeline,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    ucfg = unet_config(arch)
    tok = make_byte_tokenizer()
    torch.manual_seed(seed)
    if device.startswith("cuda"):
        torch.cuda.manual_seed_all(seed)
    with torch.device(device), default_dtype(torch_dtype(dtype)):
        unet = UNet2DConditionModel(**ucfg)
        vae = _vae(arch)
        tiny = {"hidden_size": 32, "intermediate_size": 37, "num_attention_heads": 4, "num_hidden_layers": 2}
        if arch.startswith("tiny"):
            text = CLIPTextModel(_text_config(tok, projection_dim=32, **tiny))
        else:  # CLIP ViT-L/14 text tower (123 M)
            text = CLIPTextModel(
                _text_config(
                    tok,
                    vocab_size=49408,
                    hidden_size=768,
                    intermediate_size=3072,
                    num_attention_heads=12,
                    num_hidden_layers=12,
                    hidden_act="quick_gelu",
                    projection_dim=768,
                )
            )
        if arch == "sdxl":  # OpenCLIP bigG text tower with projection (695 M)
            text_2 = CLIPTextModelWithProjection(
                _text_config(
                    tok,
                    vocab_size=49408,
                    hidden_size=1280,
                    intermediate_size=5120,
                    num_attention_heads=20,
                    num_hidden_layers=32,
                    hidden_act="gelu",
                    projection_dim=1280,
                )
            )
        elif arch == "tiny-sdxl":
            text_2 = CLIPTextModelWithProjection(_text_config(tok, projection_dim=32, **tiny))
    if arch in ("sdxl", "tiny-sdxl"):
        sched = EulerDiscreteScheduler(
            beta_start=0.00085,
            beta_end=0.012,
            beta_schedule="scaled_linear",
            steps_offset=1,
            timestep_spacing="leading",
        )
        return StableDiffusionXLPipeline(
            vae=vae,
            text_encoder=text,
            text_encoder_2=text_2,
            tokenizer=tok,
            tokenizer_2=make_byte_tokenizer(),
            unet=unet,
            scheduler=sched,
            force_zeros_for_empty_prompt=True,
        )
    if arch == "sd15":  # the released SD-1.5 ships PNDM (PLMS): steps + 1 UNet calls per image
        sched = PNDMScheduler(
            beta_start=0.00085,
            beta_end=0.012,
            beta_schedule="scaled_linear",
            skip_prk_steps=True,
            set_alpha_to_one=False,
            steps_offset=1,
        )
    else:  # tiny: DDIM, one UNet call per step
        sched = DDIMScheduler(
            beta_start=0.00085,
            beta_end=0.012,
            beta_schedule="scaled_linear",
            clip_sample=False,
            set_alpha_to_one=False,
            steps_offset=1,
        )
    return StableDiffusionPipeline(
        unet=unet,
        vae=vae,
        text_encoder=text,
        tokenizer=tok,
        scheduler=sched,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def save_tiny_pipeline(out_dir: str | os.PathLike, seed: int = 0, arch: str = "tiny") -> str:
    """Build a tiny random pipeline (``tiny`` or ``tiny-sdxl``) and ``save_pretrained`` it
    to ``out_dir`` (about 8 MB)."""
    pipe = build_random_pipeline(arch, "cpu", seed)
    pipe.save_pretrained(str(out_dir))
    return str(out_dir)


def quiet_libraries() -> None:
    """Silence diffusers/transformers progress bars and info logs (worker processes)."""
    import diffusers
    import transformers

    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def load_pipeline(
    *,
    model_path: str | None,
    random_init: str | None,
    device: str,
    dtype: str = "fp32",
    seed: int = 0,
) -> Any:
    """Load (``model_path``) or build (``random_init``) a pipeline on ``device`` in ``dtype``.

    ``model_path`` must already be resolved to a local directory
    (``resolve_model_path``); it is loaded with ``local_files_only=True``.
    """
    from diffusers import DiffusionPipeline

    tdtype = torch_dtype(dtype)
    if model_path is not None:
        pipe = DiffusionPipeline.from_pretrained(model_path, dtype=tdtype, local_files_only=True)
        if getattr(pipe, "safety_checker", None) is not None:
            pipe.safety_checker = None  # not part of the measured task
        pipe = pipe.to(device)
    elif random_init is not None:
        pipe = build_random_pipeline(random_init, device, seed, dtype)
    else:
        raise ValueError("either model_path or random_init must be given")
    pipe.set_progress_bar_config(disable=True)
    return pipe
