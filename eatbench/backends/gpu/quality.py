"""Image quality through torchmetrics, from local weights only, and the quality-curve tool.

* ``clip_scores`` / ``clip_score``: CLIPScore (``100 * max(cos(image, text), 0)``, range
  0..100) with a CLIP model loaded from a local directory. transformers >= 5 returns
  output objects from ``get_*_features``; torchmetrics 1.9.0 expects tensors
  (torchmetrics issue #3407), so the model is wrapped (``_TensorFeatsCLIP``).
* ``FidMeter`` / ``fid``: Frechet distance with a user-supplied feature extractor
  (``nn.Module``), a local TorchScript/pickled module file, or the Inception network
  from a local weights file (needs torch-fidelity). Nothing is downloaded. Images are
  converted and fed in batches (``batch_size``), never stacked as one set, and a custom
  extractor gets them resized to its input size (``image_size``, default 299 px, as the
  Inception network, which resizes by itself).
* ``measure_quality_curve``: generate images at several step counts with a real
  pipeline and write the CSV (steps, quality, quality_ci95, fid, n) that the sim
  backend loads as a ``table`` quality curve.

Images may be PIL images, uint8 tensors/arrays (N, 3, H, W) or (H, W, 3), or float
tensors in [0, 1].
"""

from __future__ import annotations

import csv
import functools
import math
import os
import warnings
from collections.abc import Sequence
from typing import Any

from eatbench.core.stats import mean_ci95

CURVE_COLUMNS = ("steps", "quality", "quality_ci95", "fid", "n")


def to_uint8_batch(images: Any) -> Any:
    """Convert images to a uint8 tensor (N, 3, H, W)."""
    import numpy as np
    import torch

    if torch.is_tensor(images):
        t = images
        if t.dim() == 3:
            t = t[None]
        if t.dtype != torch.uint8:
            t = (t.clamp(0, 1) * 255).round().to(torch.uint8)
        return t
    arrays = []
    for im in images:
        a = np.asarray(im.convert("RGB") if hasattr(im, "convert") else im)
        if a.ndim == 3 and a.shape[-1] == 3:
            a = a.transpose(2, 0, 1)
        if a.dtype != np.uint8:
            a = (np.clip(a, 0, 1) * 255).round().astype(np.uint8)
        arrays.append(torch.from_numpy(np.ascontiguousarray(a)))
    return torch.stack(arrays)


@functools.lru_cache(maxsize=4)
def _load_clip(path: str, device: str) -> tuple[Any, Any]:
    import torch
    from transformers import CLIPModel, CLIPProcessor

    class _TensorFeatsCLIP(CLIPModel):
        """CLIPModel whose feature getters return tensors (torchmetrics 1.9 + transformers 5)."""

        def get_image_features(self, *a: Any, **k: Any) -> Any:
            o = super().get_image_features(*a, **k)
            return o if isinstance(o, torch.Tensor) else o.pooler_output

        def get_text_features(self, *a: Any, **k: Any) -> Any:
            o = super().get_text_features(*a, **k)
            return o if isinstance(o, torch.Tensor) else o.pooler_output

    if not os.path.isdir(path):
        raise FileNotFoundError(f"clip_model_path={path!r} is not a local directory")
    model = _TensorFeatsCLIP.from_pretrained(path, local_files_only=True).to(device).eval()
    processor = CLIPProcessor.from_pretrained(path, local_files_only=True)
    return model, processor


def clip_scores(images: Any, prompts: Sequence[str], clip_model_path: str, device: str = "cpu") -> list[float]:
    """CLIP score of each (image, prompt) pair, 0..100, with a local CLIP model.

    :param images: N images (see the module docstring).
    :param prompts: N prompts.
    :param clip_model_path: directory holding a CLIPModel and CLIPProcessor
        (``save_pretrained``); loaded with ``local_files_only=True`` and cached.
    :param device: where the CLIP model runs.
    """
    import torch
    from torchmetrics.functional.multimodal import clip_score as tm_clip_score

    batch = to_uint8_batch(images)
    if len(batch) != len(prompts):
        raise ValueError(f"{len(batch)} images but {len(prompts)} prompts")
    model, processor = _load_clip(os.path.abspath(clip_model_path), device)
    out = []
    with torch.no_grad():
        for img, prompt in zip(batch, prompts, strict=True):
            score = tm_clip_score(img.to(device), prompt, model_name_or_path=lambda: (model, processor))
            out.append(float(score))
    return out


def clip_score(images: Any, prompts: Sequence[str], clip_model_path: str, device: str = "cpu") -> float:
    """Mean CLIP score (0..100) of the pairs; see ``clip_scores``."""
    scores = clip_scores(images, prompts, clip_model_path, device)
    return sum(scores) / len(scores)


def save_tiny_clip(out_dir: str | os.PathLike, seed: int = 5) -> str:
    """Save a tiny random CLIP model + processor (250 KB) for tests and ``--tiny`` checks.

    Its scores are meaningless but deterministic; CLIPScore clips negative cosines to 0,
    and with the default seed most random inputs score above 0, so tests can see them.
    """
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    from eatbench.backends.gpu.pipelines import make_byte_tokenizer

    tok = make_byte_tokenizer()
    common = {"hidden_size": 32, "intermediate_size": 37, "num_attention_heads": 4, "num_hidden_layers": 2}
    cfg = CLIPConfig(
        text_config=dict(
            vocab_size=len(tok),
            max_position_embeddings=77,
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
            **common,
        ),
        vision_config=dict(image_size=32, patch_size=8, **common),
        projection_dim=16,
    )
    torch.manual_seed(seed)
    CLIPModel(cfg).save_pretrained(str(out_dir))
    processor = CLIPProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
        tokenizer=tok,
    )
    processor.save_pretrained(str(out_dir))
    return str(out_dir)


def _feature_module(feature: Any) -> Any:
    """Turn ``feature`` (module, int, or local file path) into what torchmetrics takes."""
    import torch

    if isinstance(feature, (int, torch.nn.Module)):
        return feature
    if isinstance(feature, (str, os.PathLike)):
        path = os.fspath(feature)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"FID feature file {path!r} does not exist")
        with warnings.catch_warnings():  # TorchScript archives load too (deprecated API)
            warnings.simplefilter("ignore", DeprecationWarning)
            obj = torch.load(path, map_location="cpu", weights_only=False)
        if isinstance(obj, torch.nn.Module):
            return obj
        return ("inception", path)  # a state dict: the Inception weights file
    raise TypeError(f"feature must be an nn.Module, an int or a file path, not {type(feature)}")


class FidMeter:
    """Frechet distance between a real and a generated image set (torchmetrics).

    :param feature: an ``nn.Module`` mapping images (N, 3, H, W) to features (N, D);
        a path to a module saved with ``torch.save(module)`` or TorchScript; or a path to the Inception-v3 FID
        weights (``pt_inception-2015-12-05``; needs torch-fidelity, which needs a
        working torchvision).
    :param normalize: images given as floats in [0, 1] (uint8 images work either way).
    :param batch_size: images converted and passed to the extractor at a time.
    :param image_size: side in pixels a custom extractor's inputs are resized to (bilinear,
        antialiased); ``None``: the module's ``image_size`` attribute, else 299. Not used
        for the Inception weights file (torchmetrics resizes for it).
    """

    def __init__(
        self, feature: Any, normalize: bool = True, batch_size: int = 64, image_size: int | None = None
    ) -> None:
        from torchmetrics.image.fid import FrechetInceptionDistance

        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} is invalid; allowed: an integer >= 1")
        self.batch_size = int(batch_size)
        feat = _feature_module(feature)
        self.image_size: int | None = None
        if not isinstance(feat, (tuple, int)):
            self.image_size = int(image_size or getattr(feat, "image_size", None) or 299)
        if isinstance(feat, tuple):
            try:
                self.metric = FrechetInceptionDistance(
                    feature=2048, normalize=normalize, feature_extractor_weights_path=feat[1]
                )
            except ModuleNotFoundError as exc:
                raise ModuleNotFoundError(
                    f"Inception FID from {feat[1]!r} needs torch-fidelity ({exc}); or pass feature=<nn.Module>"
                ) from None
        else:
            self.metric = FrechetInceptionDistance(feature=feat, normalize=normalize)
        self.normalize = normalize

    def _prep(self, images: Any) -> Any:
        """One chunk: uint8 (N, 3, H, W), resized for a custom extractor, scaled if normalizing."""
        import torch

        if self.image_size is not None:
            size = (self.image_size, self.image_size)
            parts = []
            for im in images if not torch.is_tensor(images) else [images]:
                t = to_uint8_batch([im] if not torch.is_tensor(im) else im)
                if tuple(t.shape[-2:]) != size:
                    t = torch.nn.functional.interpolate(t.float(), size=size, mode="bilinear", antialias=True)
                    t = t.round().clamp(0, 255).to(torch.uint8)
                parts.append(t)
            batch = torch.cat(parts)
        else:
            batch = to_uint8_batch(images)
        return batch.float() / 255.0 if self.normalize else batch

    def update(self, images: Any, real: bool) -> None:
        """Add images to the real or the generated set, ``batch_size`` at a time."""
        import torch

        if torch.is_tensor(images) and images.dim() == 3:
            images = images[None]
        for start in range(0, len(images), self.batch_size):
            self.metric.update(self._prep(images[start : start + self.batch_size]), real=real)

    def compute(self) -> float:
        """The FID (>= 0; ~0 for identical sets); needs >= 2 images per set."""
        return float(self.metric.compute())


def fid(real: Any, fake: Any, feature: Any, batch_size: int = 64, image_size: int | None = None) -> float:
    """FID between two image sets; see ``FidMeter``."""
    meter = FidMeter(feature, batch_size=batch_size, image_size=image_size)
    meter.update(real, real=True)
    meter.update(fake, real=False)
    return meter.compute()


def measure_quality_curve(
    *,
    out_csv: str,
    prompts: Sequence[str],
    steps_list: Sequence[int],
    clip_model_path: str,
    model_path: str | None = None,
    random_init: str | None = None,
    allow_random: bool = False,
    resolution: int = 512,
    seed: int = 0,
    guidance_scale: float = 7.5,
    device: str = "cpu",
    dtype: str = "fp32",
    real_images: Any = None,
    fid_feature: Any = None,
    image_dir: str | None = None,
) -> list[dict]:
    """Measure quality (mean CLIP score) versus the number of denoising steps.

    For each ``steps`` in ``steps_list`` one image per prompt is generated (prompt ``i``
    with seed ``seed + i``) and scored. Writes ``out_csv`` with columns ``steps``,
    ``quality`` (mean CLIP score, 0..100), ``quality_ci95`` (95% CI half-width), ``fid``
    (empty unless ``real_images`` and ``fid_feature`` are given) and ``n`` (images).

    :param model_path: local pipeline directory or cached repo id (never downloaded).
    :param random_init: ``sd15``/``sdxl``/``tiny`` random weights; refused unless
        ``allow_random`` (a random model's "quality" is meaningless: tests only).
    :param real_images: reference images for FID (see ``FidMeter``).
    :param fid_feature: FID feature extractor (see ``FidMeter``).
    :param image_dir: also save every image there (``steps{S}_{i}.png``).
    :returns: the rows written.
    """
    from eatbench.backends.gpu.pipelines import load_pipeline, resolve_model_path

    if random_init is not None and not allow_random:
        raise ValueError("a random-weight model has no meaningful quality; pass allow_random=True for tests")
    if not prompts or not steps_list:
        raise ValueError("prompts and steps_list must not be empty")
    import torch

    path = resolve_model_path(model_path) if model_path is not None else None
    pipe = load_pipeline(model_path=path, random_init=random_init, device=device, dtype=dtype, seed=seed)
    rows = []
    for steps in steps_list:
        images = []
        for i, prompt in enumerate(prompts):
            g = torch.Generator("cpu").manual_seed(seed + i)
            img = pipe(
                prompt=prompt,
                height=resolution,
                width=resolution,
                num_inference_steps=int(steps),
                guidance_scale=guidance_scale,
                generator=g,
            ).images[0]
            images.append(img)
            if image_dir:
                os.makedirs(image_dir, exist_ok=True)
                img.save(os.path.join(image_dir, f"steps{steps}_{i}.png"))
        scores = clip_scores(images, list(prompts), clip_model_path, device=device)
        mean, ci = mean_ci95(scores)
        fid_value = None
        if real_images is not None and fid_feature is not None:
            fid_value = fid(real_images, images, fid_feature)
        rows.append({"steps": int(steps), "quality": mean, "quality_ci95": ci, "fid": fid_value, "n": len(scores)})
    os.makedirs(os.path.dirname(os.path.abspath(out_csv)), exist_ok=True)
    with open(out_csv, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CURVE_COLUMNS)
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if v is None or (isinstance(v, float) and math.isnan(v)) else v) for k, v in r.items()})
    return rows
