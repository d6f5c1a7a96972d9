"""CLIP score and FID through torchmetrics with tiny local models, and the quality-curve tool."""

from __future__ import annotations

import csv

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchmetrics")
pytest.importorskip("transformers")

from eatbench.backends.gpu import quality  # noqa: E402


class TinyFeat(torch.nn.Module):
    """A fixed random conv net as FID feature extractor (64 features)."""

    num_features = 64
    image_size = 32  # the test images' size: FidMeter resizes to it (no-op here)

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(1234)
        self.net = torch.nn.Sequential(
            torch.nn.Conv2d(3, 16, 3, 2, 1),
            torch.nn.ReLU(),
            torch.nn.Conv2d(16, 64, 3, 2, 1),
            torch.nn.ReLU(),
            torch.nn.AdaptiveAvgPool2d(1),
            torch.nn.Flatten(),
        )
        for p in self.net.parameters():
            p.data = torch.randn(p.shape, generator=g) * 0.1
        self.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.float() / 255 if x.dtype == torch.uint8 else x)


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    return quality.save_tiny_clip(tmp_path_factory.mktemp("clip"))


@pytest.fixture(scope="module")
def tiny_pipe_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    from eatbench.backends.gpu.pipelines import save_tiny_pipeline

    return save_tiny_pipeline(tmp_path_factory.mktemp("tiny_sd"))


def _images(n: int, seed: int = 0, size: int = 32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g)


def test_clip_scores_match_direct_cosine(clip_dir: str) -> None:
    images, prompts = _images(4), ["a cat", "a dog", "a red car", "a tree"]
    scores = quality.clip_scores(images, prompts, clip_dir)
    assert len(scores) == 4 and all(0.0 <= s <= 100.0 for s in scores)
    assert scores == quality.clip_scores(images, prompts, clip_dir)  # deterministic
    assert any(s > 0 for s in scores)  # the seeded tiny model gives positive scores
    # the same number computed by hand: 100 * max(cos(image, text), 0)
    model, processor = quality._load_clip(str(clip_dir), "cpu")
    with torch.no_grad():
        inp = processor(text=prompts, images=list(images), return_tensors="pt", padding=True)
        img = model.get_image_features(pixel_values=inp["pixel_values"])
        txt = model.get_text_features(input_ids=inp["input_ids"], attention_mask=inp["attention_mask"])
        cos = torch.nn.functional.cosine_similarity(img, txt)
    expected = (100 * cos).clamp(min=0).tolist()
    assert scores == pytest.approx(expected, abs=1e-3)
    assert quality.clip_score(images, prompts, clip_dir) == pytest.approx(sum(scores) / 4)


def test_clip_score_accepts_pil_and_rejects_mismatch(clip_dir: str) -> None:
    from PIL import Image

    arr = _images(1)[0].permute(1, 2, 0).numpy()
    pil = [Image.fromarray(arr)]
    assert quality.clip_scores(pil, ["a cat"], clip_dir) == quality.clip_scores(_images(1), ["a cat"], clip_dir)
    with pytest.raises(ValueError, match="2 prompts"):
        quality.clip_scores(_images(1), ["a", "b"], clip_dir)
    with pytest.raises(FileNotFoundError):
        quality.clip_scores(_images(1), ["a"], str(clip_dir) + "_missing")


def test_fid_zero_for_same_set_and_grows_with_noise() -> None:
    real = _images(48, seed=1).float() / 255
    feat = TinyFeat()
    same = quality.fid(real, real, feat)
    fids = []
    for sigma in (0.05, 0.2, 0.5):
        noisy = (real + sigma * torch.randn(real.shape, generator=torch.Generator().manual_seed(2))).clamp(0, 1)
        fids.append(quality.fid(real, noisy, feat))
    assert abs(same) < 1e-3
    assert same < fids[0] < fids[1] < fids[2]


def test_fid_meter_from_module_file(tmp_path) -> None:
    real, fake = _images(16, seed=3), _images(16, seed=4)
    path = tmp_path / "feat.pt"
    torch.save(TinyFeat(), str(path))
    meter = quality.FidMeter(str(path))
    meter.update(real, real=True)
    meter.update(fake, real=False)
    assert meter.compute() == pytest.approx(quality.fid(real, fake, TinyFeat()), rel=1e-4)
    with pytest.raises(FileNotFoundError):
        quality.FidMeter(str(tmp_path / "missing.pt"))


class ShapeRecorder(TinyFeat):
    """TinyFeat that records the shape of every batch it is given."""

    image_size = 48

    def __init__(self) -> None:
        super().__init__()
        self.shapes: list[tuple[int, ...]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.shapes.append(tuple(x.shape))
        return super().forward(x)


def test_fid_feeds_a_custom_extractor_resized_batches() -> None:
    """Batches of at most ``batch_size``, every image resized to the extractor's input size
    (also images of different sizes), and the same FID as one big batch."""
    from PIL import Image

    feat = ShapeRecorder()
    real = _images(10, seed=5, size=32)
    fake = [
        Image.fromarray(_images(1, seed=6 + i, size=24 + 8 * (i % 3))[0].permute(1, 2, 0).numpy()) for i in range(7)
    ]
    meter = quality.FidMeter(feat, batch_size=4)
    assert meter.image_size == 48  # the module's own input size
    meter.update(real, real=True)
    meter.update(fake, real=False)
    value = meter.compute()
    assert all(s[0] <= 4 and s[2:] == (48, 48) for s in feat.shapes), feat.shapes
    assert sum(s[0] for s in feat.shapes) == 17  # every image once, none stacked as one set
    whole = quality.fid(real, fake, ShapeRecorder(), batch_size=64)
    assert value == pytest.approx(whole, rel=1e-3)
    plain = torch.nn.Flatten()
    plain.num_features = 3  # what torchmetrics needs; no image_size attribute
    assert quality.FidMeter(plain).image_size == 299  # the Inception default
    assert quality.FidMeter(TinyFeat(), image_size=64).image_size == 64
    with pytest.raises(ValueError, match="batch_size=0 is invalid"):
        quality.FidMeter(TinyFeat(), batch_size=0)


def test_mean_ci95() -> None:
    from eatbench.core.stats import mean_ci95

    mean, ci = mean_ci95([1.0, 2.0, 3.0])
    assert mean == 2.0 and ci == pytest.approx(1.96 * 1.0 / 3**0.5)


def test_measure_quality_curve_writes_table_csv(tmp_path, tiny_pipe_dir: str, clip_dir: str) -> None:
    out = tmp_path / "curve.csv"
    rows = quality.measure_quality_curve(
        out_csv=str(out),
        prompts=["a cat", "a dog"],
        steps_list=[1, 3],
        clip_model_path=clip_dir,
        model_path=tiny_pipe_dir,
        resolution=32,
        real_images=_images(4, seed=5),
        fid_feature=TinyFeat(),
        image_dir=str(tmp_path / "img"),
    )
    with open(out) as f:
        table = list(csv.DictReader(f))
    assert list(table[0]) == ["steps", "quality", "quality_ci95", "fid", "n"]
    assert [int(r["steps"]) for r in table] == [1, 3]
    assert all(int(r["n"]) == 2 for r in table)
    assert all(0.0 <= float(r["quality"]) <= 100.0 and float(r["fid"]) >= 0.0 for r in table)
    assert rows[0]["quality"] == pytest.approx(float(table[0]["quality"]))
    assert len(list((tmp_path / "img").glob("*.png"))) == 4


def test_measure_quality_curve_refuses_random_weights(tmp_path, clip_dir: str) -> None:
    with pytest.raises(ValueError, match="random"):
        quality.measure_quality_curve(
            out_csv=str(tmp_path / "c.csv"), prompts=["a"], steps_list=[1], clip_model_path=clip_dir, random_init="tiny"
        )
