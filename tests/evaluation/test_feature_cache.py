"""The evaluation's feature cache: LRU by bytes, and scores identical to the uncached run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from msanet_lib.data.datasets import FewShotDataset
from msanet_lib.data.transforms import train_transform
from msanet_lib.evaluation import __main__ as cli
from msanet_lib.evaluation.cached_encoder import CachedEncoder, EpisodeImages
from msanet_lib.evaluation.feature_cache import FeatureCache, FeatureKey, ImageFeatures
from msanet_lib.evaluation.protocol import collate_for_eval, evaluate
from msanet_lib.model.inference import prepare_for_inference
from msanet_lib.model.msanet import MSANet, MSANetConfig

SIZE = 48  # test canvas of the tiny toy benchmark (multiple of 8)


def features(nbytes: int) -> ImageFeatures:
    """Features whose storage is exactly ``nbytes`` (a uint8 map)."""
    return ImageFeatures(layers=(torch.zeros(nbytes, 1, 1, dtype=torch.uint8),), blocks=())


def key(name: str, precision: str = "float32") -> FeatureKey:
    return FeatureKey(name, "TestResize(48)", precision)


# --------------------------------------------------------------------------- the LRU itself


def test_lru_evicts_the_least_recently_used_and_stays_within_its_budget() -> None:
    cache = FeatureCache(300)
    for name in "abc":
        assert cache.put(key(name), features(100))
    assert cache.get(key("a")) is not None  # a is now the most recent: b goes first
    assert cache.put(key("d"), features(100))
    assert cache.keys() == [key("c"), key("a"), key("d")]
    assert cache.put(key("e"), features(250))  # needs 250: drops c, a and d
    assert cache.keys() == [key("e")]
    assert cache.stats.evictions == 4 and cache.stats.bytes == 250 <= cache.budget_bytes
    assert not cache.put(key("huge"), features(301))  # larger than the budget: not stored,
    assert cache.keys() == [key("e")]  # and nothing evicted for it
    assert cache.stats.peak_bytes == 300
    assert cache.get(key("a")) is None and key("e") in cache


def test_a_budget_of_zero_stores_nothing_and_a_negative_one_is_refused() -> None:
    cache = FeatureCache(0)
    assert not cache.enabled and not cache.put(key("a"), features(1))
    assert cache.get(key("a")) is None and len(cache) == 0
    assert (cache.stats.hits, cache.stats.misses) == (0, 1)
    with pytest.raises(ValueError, match="0 \\(off\\)"):
        FeatureCache(-1)


def test_keys_differ_by_precision_and_transform() -> None:
    cache = FeatureCache(1000)
    cache.put(key("a", "float32"), features(10))
    assert cache.get(key("a", "bf16")) is None
    assert cache.get(FeatureKey("a", "TestResize(64)", "float32")) is None
    assert cache.get(key("a", "float32")) is not None


# --------------------------------------------------------------------------- with MSANet


@pytest.fixture(scope="module")
def toy_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from msanet_lib.data.toy import ensure_toy_benchmark

    return ensure_toy_benchmark(tmp_path_factory.mktemp("data") / "toy",
                                sizes={"train": 8, "val": 48})


@pytest.fixture(scope="module")
def dataset(toy_root: Path) -> FewShotDataset:
    return FewShotDataset(toy_root, benchmark="toy", fold=0, split="val", shots=1,
                          image_size=SIZE)


@pytest.fixture(scope="module")
def model() -> MSANet:
    torch.manual_seed(0)
    return MSANet(MSANetConfig(backbone="resnet_toy", reduce_dim=16, hyper_dim=8,
                               base_hidden=16)).eval()


def test_a_query_and_a_support_of_the_same_image_are_the_same_tensor(dataset) -> None:
    """The premise of one key per image: the val transform ignores the image's role."""
    episodes = [dataset[i] for i in range(len(dataset.lists.images))]
    as_query = {ep["query_name"]: ep["query_img"] for ep in episodes}
    pairs = [(img, as_query[name]) for ep in episodes
             for img, name in zip(ep["support_imgs"], ep["support_names"]) if name in as_query]
    assert pairs
    assert all(torch.equal(a, b) for a, b in pairs)


def test_only_the_maps_the_model_reads_take_memory(model) -> None:
    encoder = CachedEncoder(prepare_for_inference(model, support_layer4_box=False), FeatureCache(2**30))
    x = torch.randn(1, 3, SIZE, SIZE)
    encoder.encode(x, x[:, None] + 1, [key("q"), key("s")])
    stored = encoder.cache.get(key("q"))
    layers, first_block = model.encoding_reads()
    assert (layers, first_block) == ((2, 3, 4), 1)  # resnet_toy: layer1's block is size-only
    read = [stored.layers[i] for i in layers] + list(stored.blocks[first_block:])
    assert stored.nbytes() == sum(t.numel() * t.element_size() for t in read) + 3 * 4
    assert encoder.cache.stats.bytes == 2 * stored.nbytes()


def test_hits_count_every_reuse_including_within_a_batch(model) -> None:
    encoder = CachedEncoder(prepare_for_inference(model, support_layer4_box=False), FeatureCache(2**30))
    imgs = {n: torch.randn(3, SIZE, SIZE) for n in "abc"}

    def run(episodes: list[tuple[str, str]]) -> None:
        x = torch.stack([imgs[q] for q, _ in episodes])
        s_x = torch.stack([imgs[s] for _, s in episodes])[:, None]
        encoder.encode(x, s_x, [key(q) for q, _ in episodes] + [key(s) for _, s in episodes])

    run([("a", "b")])             # 2 misses
    run([("b", "c")])             # b hit, c miss
    run([("a", "c"), ("c", "a")])  # a, c hits; then c and a again within the batch: hits
    stats = encoder.cache.stats
    assert (stats.misses, stats.hits, len(encoder.cache)) == (3, 5, 3)


def test_cached_outputs_equal_the_uncached_ones_bit_for_bit(model, dataset) -> None:
    """Model as trained and evaluation copy (folded, channels_last), batches of 1 and 3.

    The channels_last copy (what msanet-eval runs on the CPU) is bit for bit on every CPU.
    The model as trained runs NCHW float32 kernels whose summation order on some CPUs (AVX2
    builds, measured: up to 2 ulp) depends on which images share the batch, and the cache
    encodes other batches than the plain run: there, float rounding only.
    """
    batches = [collate_for_eval([dataset[i] for i in idx])
               for idx in ([0], [1], [2, 3, 0], [4, 1, 5], [2], [5, 0, 3])]
    for prepared, channels_last in (
            (prepare_for_inference(model, fold_bn=False, factorise_base_learner=False,
                                   support_layer4_box=False), False),
            (prepare_for_inference(model, channels_last=True, support_layer4_box=False), True)):
        encoder = CachedEncoder(prepared, FeatureCache(2**30))
        images = EpisodeImages(dataset, "float32")
        with torch.inference_mode():
            for batch in batches:
                x, s_x, s_y = batch["query_img"], batch["support_imgs"], batch["support_masks"]
                if channels_last:  # as the protocol gives it to a channels_last copy
                    x = x.contiguous(memory_format=torch.channels_last)
                plain = prepared(x, s_x, s_y)
                cached = prepared(x, s_x, s_y, encoding=encoder.encode(x, s_x, images.keys(batch)))
                for a, b in zip(plain, cached):
                    if channels_last:
                        assert torch.equal(a, b)
                    else:
                        torch.testing.assert_close(b, a, rtol=1e-6, atol=1e-6)
        assert encoder.cache.stats.hits > 0


def test_a_lone_new_image_is_encoded_as_in_a_batch(model) -> None:
    """A batch of one image runs other float32 kernels on the CPU: the encoder never makes one."""
    prepared = prepare_for_inference(model, channels_last=True, support_layer4_box=False)
    encoder = CachedEncoder(prepared, FeatureCache(2**30))
    torch.manual_seed(1)
    imgs = {n: torch.randn(1, 3, SIZE, SIZE) for n in "abc"}
    s_y = torch.zeros(1, 1, SIZE, SIZE, dtype=torch.long)
    s_y[..., 8:30, 10:40] = 1
    with torch.inference_mode():
        for q, s in (("a", "b"), ("a", "c"), ("b", "c")):  # then only c, then nothing is new
            x = imgs[q].contiguous(memory_format=torch.channels_last)
            s_x = imgs[s][:, None]
            cached = prepared(x, s_x, s_y, encoding=encoder.encode(x, s_x, [key(q), key(s)]))
            for a, b in zip(prepared(x, s_x, s_y), cached):
                assert torch.equal(a, b)
    assert (encoder.cache.stats.misses, encoder.cache.stats.hits) == (3, 3)


@pytest.mark.parametrize("config", [
    dict(backbone="resnet_toy", use_multi_similarity=False, use_base_learner=False),  # no block read
    dict(backbone="resnet_toy", shots=2),
    dict(backbone="vgg16_bn", shots=2),  # every block read; layer2 group from the last shot
], ids=["ablation", "resnet_toy-2shot", "vgg-2shot"])
def test_other_configurations_are_served_exactly(config) -> None:
    torch.manual_seed(0)
    model = MSANet(MSANetConfig(**config, reduce_dim=16, hyper_dim=8, base_hidden=16))
    prepared = prepare_for_inference(model, channels_last=True, support_layer4_box=False)
    encoder = CachedEncoder(prepared, FeatureCache(2**30))
    imgs = torch.randn(4, 3, SIZE, SIZE)
    s_y = torch.zeros(2, 2, SIZE, SIZE, dtype=torch.long)
    s_y[..., 8:30, 10:40] = 1
    shots = model.config.shots
    with torch.inference_mode():
        for q, s in (([0, 1], [[2, 3], [3, 0]]), ([2, 3], [[0, 1], [1, 2]])):
            x = imgs[q].contiguous(memory_format=torch.channels_last)
            s_x = torch.stack([imgs[r[:shots]] for r in s])
            keys = [key(str(i)) for i in q] + [key(str(i)) for r in s for i in r[:shots]]
            cached = prepared(x, s_x, s_y[:, :shots], encoding=encoder.encode(x, s_x, keys))
            for a, b in zip(prepared(x, s_x, s_y[:, :shots]), cached):
                assert (a is None and b is None) or torch.equal(a, b)
    assert encoder.cache.stats.hits > 0


def _scores(result) -> dict:
    data = result.to_dict()
    data["seeds"] = [{k: v for k, v in s.items() if k != "seconds"} for s in data["seeds"]]
    data.pop("info")
    return data


@pytest.mark.parametrize(("amp", "batch_size", "fold_bn"),
                         [(None, 1, True), (None, 3, False), ("bf16", 2, True)])
def test_cached_evaluation_scores_equal_the_uncached_ones(model, dataset, amp, batch_size,
                                                          fold_bn) -> None:
    kwargs = dict(episodes=24, seeds=(510, 365), device="cpu", amp=amp, batch_size=batch_size,
                  fold_bn=fold_bn, progress=False)
    plain = evaluate(model, dataset, **kwargs, support_layer4_box=False)
    cached = evaluate(model, dataset, **kwargs, feature_cache_bytes=2**30)
    assert _scores(cached) == _scores(plain)
    stats = cached.info["feature_cache"]
    assert plain.info["feature_cache"] is None
    assert stats["hits"] + stats["misses"] == 2 * 24 * 2  # query + shot, episodes, seeds
    assert stats["misses"] <= len(dataset.lists.images) + sum(
        len(v) for v in dataset.lists.class_files.values())
    assert stats["hits"] > stats["misses"]  # the second seed meets the same images


def test_a_small_budget_evicts_yet_scores_stay_equal(model, dataset) -> None:
    kwargs = dict(episodes=16, seeds=(3,), device="cpu", batch_size=2, progress=False)
    one_image = CachedEncoder(prepare_for_inference(model, support_layer4_box=False),
                              FeatureCache(2**30))
    x = torch.randn(1, 3, SIZE, SIZE)
    one_image.encode(x, x[:, None], [key("q"), key("s")])
    budget = 3 * one_image.cache.stats.bytes // 2  # three images
    cached = evaluate(model, dataset, **kwargs, feature_cache_bytes=budget)
    assert _scores(cached) == _scores(evaluate(model, dataset, **kwargs, support_layer4_box=False))
    stats = cached.info["feature_cache"]
    assert stats["evictions"] > 0 and stats["peak_bytes"] <= budget and stats["items"] <= 3


def test_what_the_cache_cannot_serve_is_refused_before_any_work(model, dataset, toy_root) -> None:
    train_like = FewShotDataset(toy_root, benchmark="toy", fold=0, split="val", shots=1,
                                transform=train_transform(SIZE))
    with pytest.raises(ValueError, match="deterministic test transform"):
        evaluate(model, train_like, episodes=2, seeds=(1,), feature_cache_bytes=2**20,
                 progress=False)
    with pytest.raises(ValueError, match="MSANet"):
        CachedEncoder(torch.nn.Conv2d(3, 3, 1), FeatureCache(1))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="feature_cache_bytes"):
        evaluate(model, dataset, episodes=2, seeds=(1,), feature_cache_bytes=-1, progress=False)


# --------------------------------------------------------------------------- msanet-eval


@pytest.fixture
def checkpoint(model: MSANet, tmp_path: Path) -> Path:
    path = tmp_path / "best.pth"
    torch.save({"config": vars(model.config), "state_dict": model.state_dict()}, path)
    return path


@pytest.mark.filterwarnings("ignore:seed .* had no episode")
def test_msanet_eval_feature_cache_gives_the_same_scores(checkpoint, toy_root, tmp_path,
                                                         capsys) -> None:
    common = ["--checkpoint", str(checkpoint), "--data-root", str(toy_root), "--test-size",
              str(SIZE), "--episodes", "12", "--seeds", "1", "2", "--device", "cpu"]
    assert cli.main([*common, "--no-support-layer4-box", "--json",
                     str(tmp_path / "plain.json")]) == 0
    capsys.readouterr()
    assert cli.main([*common, "--feature-cache", "64", "--json", str(tmp_path / "cached.json")]) == 0
    err = capsys.readouterr().err
    assert "feature cache: " in err and " hits" in err and "of 64 MiB" in err
    plain, cached = (json.loads((tmp_path / f"{n}.json").read_text())["folds"]["0"]
                     for n in ("plain", "cached"))
    assert plain["summary"] == cached["summary"]
    assert cached["info"]["feature_cache"]["budget_bytes"] == 64 * 2**20


@pytest.mark.filterwarnings("ignore:seed .* had no episode")
def test_msanet_eval_hsnet_protocol_with_the_cache(checkpoint, toy_root, tmp_path, capsys) -> None:
    """HSNet's stretch to N x N is deterministic too: same scores with the cache."""
    common = ["--checkpoint", str(checkpoint), "--data-root", str(toy_root), "--protocol",
              "hsnet", "--test-size", str(SIZE), "--episodes", "10", "--seeds", "1", "2",
              "--device", "cpu"]
    assert cli.main([*common, "--json", str(tmp_path / "plain.json")]) == 0
    assert cli.main([*common, "--feature-cache", "64", "--json", str(tmp_path / "cached.json")]) == 0
    plain, cached = (json.loads((tmp_path / f"{n}.json").read_text())["folds"]["0"]
                     for n in ("plain", "cached"))
    assert plain["summary"] == cached["summary"]
    assert "StretchResize" in str(cli.build_dataset("toy", str(toy_root), 0, 1, SIZE,
                                                    protocol="hsnet").transform)
    assert cached["info"]["feature_cache"]["hits"] > 0


@pytest.mark.parametrize("value", ["-1", "nan"])
def test_msanet_eval_rejects_a_bad_budget_in_one_line(checkpoint, capsys, value) -> None:
    code = cli.main(["--checkpoint", str(checkpoint), "--device", "cpu", "--feature-cache", value])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("msanet-eval: error: --feature-cache") and "MiB" in err[0]
    assert len(err) == 2 and "--debug" in err[1]  # the usual hint, no traceback


def test_the_projection_script_replays_the_walk_of_a_real_run(model, dataset, toy_root,
                                                              capsys) -> None:
    """scripts/feature_cache_projection.py counts the hits a batch-1 evaluation makes."""
    import importlib.util

    path = Path(__file__).parents[2] / "scripts" / "feature_cache_projection.py"
    spec = importlib.util.spec_from_file_location("feature_cache_projection", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)  # type: ignore[union-attr]
    measured = evaluate(model, dataset, episodes=30, seeds=(4, 9), device="cpu", progress=False,
                        feature_cache_bytes=2**30).info["feature_cache"]
    assert script.main(["--data-root", str(toy_root), "--episodes", "30", "--seeds", "4", "9",
                        "--capacity", "100000"]) == 0
    row = capsys.readouterr().out.strip().splitlines()[-1]
    assert row == (f"| 100000 | {measured['hits']} | {measured['misses']} | "
                   f"{100 * measured['hits'] / (measured['hits'] + measured['misses']):.1f}% |")
