"""The data pipeline: P x K sampling, seeded transforms, the image cache, fingerprint and loaders."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from atzoo.config import TrainConfig
from atzoo.data import build_train_set, parse_root
from atzoo.data.cache import ImageCache, dataset_fingerprint, decode_resized, default_cache_dir
from atzoo.data.loaders import eval_loader, train_loader
from atzoo.data.sampler import PKSampler
from atzoo.data.transforms import build_eval_transform, build_train_transform
from atzoo.errors import AtzooError, DataError
from atzoo.protocol import IR, RGB
from tests.atustc_tree import HAND_MADE, write_tree

NORM = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
SIZE = (32, 16)

# --------------------------------------------------------------------------------------------
# sampler


def _persons_and_modalities(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """12 persons with 1..12 images; persons 0-3 RGB only, 4-7 IR only, 8-11 both."""
    rng = np.random.default_rng(seed)
    persons, modality = [], []
    for person in range(12):
        count = person + 1
        persons += [person] * count
        if person < 4:
            modality += [RGB] * count
        elif person < 8:
            modality += [IR] * count
        else:
            modality += [RGB, IR] + list(rng.choice([RGB, IR], count - 2))
    order = rng.permutation(len(persons))
    return np.array(persons)[order], np.array(modality)[order]


def _batches(sampler: PKSampler) -> list[list[tuple[int, int]]]:
    pairs = list(sampler)
    size = sampler.batch_size
    return [pairs[i:i + size] for i in range(0, len(pairs), size)]


def test_every_batch_holds_p_distinct_persons_with_k_images_each():
    persons, _ = _persons_and_modalities()
    sampler = PKSampler(persons, 4, 3, seed=1, iters_per_epoch=20)
    batches = _batches(sampler)
    assert len(batches) == 20 and len(sampler) == 20 * 12
    for batch in batches:
        counts = Counter(int(persons[i]) for i, _ in batch)
        assert len(counts) == 4 and set(counts.values()) == {3}


def test_persons_with_fewer_than_k_images_are_repeated_and_larger_ones_are_not():
    persons, _ = _persons_and_modalities()
    for batch in _batches(PKSampler(persons, 4, 5, seed=2, iters_per_epoch=30)):
        for person in {int(persons[i]) for i, _ in batch}:
            indices = [i for i, _ in batch if persons[i] == person]
            available = int((persons == person).sum())
            assert len(set(indices)) == min(5, available)


def test_persons_are_cycled_so_each_is_used_before_any_is_used_twice():
    persons, _ = _persons_and_modalities()
    batches = _batches(PKSampler(persons, 4, 2, seed=3, iters_per_epoch=3))
    used = [int(persons[i]) for batch in batches for i, _ in batch]
    assert set(used) == set(range(12))


def test_modality_balanced_batches_take_half_rgb_half_ir_from_persons_with_both():
    persons, modality = _persons_and_modalities()
    sampler = PKSampler(persons, 6, 4, seed=4, modality=modality, modality_balanced=True, iters_per_epoch=25)
    seen_single = False
    for batch in _batches(sampler):
        for person in {int(persons[i]) for i, _ in batch}:
            mods = Counter(int(modality[i]) for i, _ in batch if persons[i] == person)
            assert sum(mods.values()) == 4
            if person >= 8:
                assert mods == {RGB: 2, IR: 2}
            else:
                seen_single = True
                assert len(mods) == 1
    assert seen_single


def test_odd_k_gives_the_extra_image_to_rgb():
    persons = np.array([0] * 6 + [1] * 6)
    modality = np.array([RGB, IR] * 6)
    for batch in _batches(PKSampler(persons, 2, 3, seed=0, modality=modality, modality_balanced=True,
                                    iters_per_epoch=4)):
        for person in (0, 1):
            assert Counter(int(modality[i]) for i, _ in batch if persons[i] == person) == {RGB: 2, IR: 1}


def test_same_seed_and_epoch_repeat_and_another_epoch_or_seed_differs():
    persons, _ = _persons_and_modalities()
    first = list(PKSampler(persons, 4, 2, seed=5, epoch=3))
    assert first == list(PKSampler(persons, 4, 2, seed=5, epoch=3))
    assert first != list(PKSampler(persons, 4, 2, seed=5, epoch=4))
    assert first != list(PKSampler(persons, 4, 2, seed=6, epoch=3))


def test_set_epoch_reproduces_a_sampler_built_for_that_epoch():
    persons, _ = _persons_and_modalities()
    sampler = PKSampler(persons, 4, 2, seed=5, epoch=0)
    sampler.set_epoch(7)
    assert list(sampler) == list(PKSampler(persons, 4, 2, seed=5, epoch=7))


def test_ranks_get_disjoint_batches_of_the_same_length_that_together_form_the_global_sequence():
    persons, _ = _persons_and_modalities()
    ranks = [PKSampler(persons, 3, 2, seed=8, epoch=1, rank=r, world_size=3, iters_per_epoch=5) for r in range(3)]
    per_rank = [_batches(s) for s in ranks]
    assert {len(s) for s in ranks} == {5 * 6} and all(len(b) == 5 for b in per_rank)
    everything = [(i.tolist(), s.tolist()) for i, s in ranks[0].global_batches()]
    for rank, batches in enumerate(per_rank):
        for step, batch in enumerate(batches):
            assert [p for p in batch] == list(zip(*everything[step * 3 + rank]))


def test_default_epoch_length_covers_the_dataset_about_once_across_ranks():
    persons, _ = _persons_and_modalities()  # 78 images
    assert len(PKSampler(persons, 4, 2, seed=0)) == (78 // 8) * 8
    assert len(PKSampler(persons, 4, 2, seed=0, world_size=2)) == (78 // 16) * 8
    assert len(PKSampler(persons[:5], 1, 2, seed=0, world_size=4)) == 2


def test_sample_seeds_differ_between_samples():
    persons, _ = _persons_and_modalities()
    seeds = [s for _, s in PKSampler(persons, 4, 4, seed=0, iters_per_epoch=10)]
    assert len(set(seeds)) > 0.95 * len(seeds)


@pytest.mark.parametrize("kwargs, message", [
    ({"num_persons": 13}, "only 12 persons"),
    ({"modality_balanced": True}, "needs the images' modality"),
    ({"rank": 2, "world_size": 2}, "rank 2"),
])
def test_sampler_rejects_impossible_settings(kwargs, message):
    persons, _ = _persons_and_modalities()
    arguments = {"num_persons": 4, "num_instances": 2, **kwargs}
    with pytest.raises(AtzooError, match=re.escape(message)):
        PKSampler(persons, arguments.pop("num_persons"), arguments.pop("num_instances"), seed=0, **arguments)


# --------------------------------------------------------------------------------------------
# transforms


def _pixels(seed: int = 0, size: tuple[int, int] = SIZE) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(*size, 3), dtype=np.uint8)


def test_eval_transform_resizes_and_normalises():
    image = Image.fromarray(_pixels(size=(64, 40)))
    tensor = build_eval_transform(SIZE, NORM)(image)
    assert tensor.shape == (3, *SIZE) and tensor.dtype == torch.float32
    expected = np.asarray(image.resize((SIZE[1], SIZE[0]), Image.BILINEAR), dtype=np.float32) / 255
    expected = (expected - np.array(NORM[0])) / np.array(NORM[1])
    np.testing.assert_allclose(tensor.permute(1, 2, 0).numpy(), expected, atol=1e-5)


def test_train_transform_is_a_function_of_the_seed():
    transform = build_train_transform(SIZE, NORM, pad=4, flip=0.5, erasing=0.5)
    pixels = _pixels()
    outputs = [transform(pixels, seed) for seed in range(12)]
    assert all(o.shape == (3, *SIZE) and o.dtype == torch.float32 for o in outputs)
    assert torch.equal(outputs[3], transform(pixels, 3))
    assert len({o.numpy().tobytes() for o in outputs}) == 12


def test_train_transform_without_randomness_equals_the_eval_transform():
    pixels = _pixels()
    train = build_train_transform(SIZE, NORM, pad=0, flip=0.0, erasing=0.0)
    evaluate = build_eval_transform(SIZE, NORM)
    for seed in range(5):
        assert torch.equal(train(pixels, seed), evaluate(pixels))


def test_flip_always_mirrors_and_erasing_always_blanks_a_rectangle_with_the_mean():
    pixels = _pixels()
    plain = build_eval_transform(SIZE, NORM)(pixels)
    assert torch.equal(build_train_transform(SIZE, NORM, pad=0, flip=1.0, erasing=0.0)(pixels, 1), plain.flip(-1))
    erased = build_train_transform(SIZE, NORM, pad=0, flip=0.0, erasing=1.0)(pixels, 1)
    changed = (erased != plain).any(0)
    assert 0 < int(changed.sum()) < SIZE[0] * SIZE[1]
    assert torch.all(erased[:, changed] == 0)
    rows, cols = torch.nonzero(changed, as_tuple=True)
    box = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
    assert int(box) >= int(changed.sum())


def test_pad_and_crop_shifts_the_image_inside_a_zero_border():
    pixels = np.full((*SIZE, 3), 200, dtype=np.uint8)
    transform = build_train_transform(SIZE, NORM, pad=4, flip=0.0, erasing=0.0)
    zero_level = -torch.tensor(NORM[0]) / torch.tensor(NORM[1])
    shifted = [transform(pixels, seed) for seed in range(10)]
    padded = [t for t in shifted if torch.allclose(t[:, 0, 0], zero_level) or torch.allclose(t[:, -1, -1], zero_level)]
    assert padded, "no crop reached into the padding in 10 seeds"


# --------------------------------------------------------------------------------------------
# fingerprint and cache


@pytest.fixture()
def tree(tmp_path) -> Path:
    return write_tree(tmp_path / "root")


def test_fingerprint_is_stable_across_roots_and_changes_with_files(tmp_path, tree):
    first = dataset_fingerprint(parse_root(tree))
    assert re.fullmatch(r"[0-9a-f]{64}", first)
    assert dataset_fingerprint(parse_root(write_tree(tmp_path / "elsewhere"))) == first
    records = parse_root(tree)
    assert dataset_fingerprint(records.subset(np.arange(len(records))[::-1])) == first
    with open(tree / HAND_MADE[0], "ab") as handle:
        handle.write(b"\0")
    grown = dataset_fingerprint(parse_root(tree))
    assert grown != first
    write_tree(tree, ["p001-d01-c02/cam01-f0-0009.jpg"])
    assert dataset_fingerprint(parse_root(tree)) not in (first, grown)


def test_default_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("ATZOO_CACHE_DIR", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("ATZOO_CACHE_DIR")
    assert default_cache_dir() == Path.home() / ".cache" / "atzoo"


def test_cache_is_built_once_reused_and_equals_a_fresh_decode(tmp_path, tree):
    records = parse_root(tree)
    cache = ImageCache(records, SIZE, tmp_path / "cache", progress=False)
    assert cache.built and cache.path.parent == tmp_path / "cache" / "images"
    assert cache.path.name.endswith("-32x16.u8") and cache.path.stat().st_size == len(records) * 32 * 16 * 3
    mtime = cache.path.stat().st_mtime_ns
    again = ImageCache(records, SIZE, tmp_path / "cache", progress=False)
    assert not again.built and again.path == cache.path and cache.path.stat().st_mtime_ns == mtime
    for index in range(len(records)):
        assert np.array_equal(again[index], decode_resized(tree / records.path[index], SIZE))
    assert not [p for p in cache.path.parent.iterdir() if p.name.endswith(".tmp")]


def test_cache_is_rebuilt_when_an_image_changes_or_the_file_is_truncated(tmp_path, tree):
    records = parse_root(tree)
    cache = ImageCache(records, SIZE, tmp_path / "cache", progress=False)
    with open(cache.path, "r+b") as handle:
        handle.truncate(100)
    assert ImageCache(records, SIZE, tmp_path / "cache", progress=False).built
    Image.fromarray(_pixels(size=(20, 10))).save(tree / "p003-d01-c01/cam09-f0-0002.png")
    changed = ImageCache(parse_root(tree), SIZE, tmp_path / "cache", progress=False)
    assert changed.built and changed.path != cache.path


def test_an_unreadable_image_stops_the_cache_with_its_path_and_leaves_no_file(tmp_path, tree):
    broken = tree / "p003-d02-c02/cam02-f0-0003.jpg"
    broken.write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match=re.escape(str(broken))):
        ImageCache(parse_root(tree), SIZE, tmp_path / "cache", progress=False)
    assert not [p for p in (tmp_path / "cache" / "images").iterdir() if p.suffix in (".u8", ".tmp")]


# --------------------------------------------------------------------------------------------
# loaders


def _config(**overrides) -> TrainConfig:
    settings = {"num_persons": 3, "num_instances": 2, "image_size": SIZE, "pad": 2, "num_workers": 0,
                "cache": False, "iters_per_epoch": 3, "seed": 11}
    return TrainConfig(**{**settings, **overrides})


def _collect(loader) -> list[dict[str, torch.Tensor]]:
    return [batch for batch in loader]


def test_train_batches_carry_the_train_sets_labels(tree):
    train_set = build_train_set(parse_root(tree))
    loader = train_loader(train_set, _config(), NORM, epoch=0)
    assert len(loader) == 3
    for batch in _collect(loader):
        assert set(batch) == {"image", "index", "person", "clothes", "modality", "camera"}
        assert batch["image"].shape == (6, 3, *SIZE) and batch["image"].dtype == torch.float32
        index = batch["index"].numpy()
        for key in ("index", "person", "clothes", "modality", "camera"):
            assert batch[key].dtype == torch.int64
        assert np.array_equal(batch["person"].numpy(), train_set.person_label[index])
        assert np.array_equal(batch["clothes"].numpy(), train_set.clothes_label[index])
        assert np.array_equal(batch["modality"].numpy(), train_set.records.modality[index])
        assert np.array_equal(batch["camera"].numpy(), train_set.records.camera[index])
        assert len(set(batch["person"].tolist())) == 3


def test_train_batches_do_not_depend_on_workers_or_the_cache(tmp_path, tree):
    train_set = build_train_set(parse_root(tree))
    reference = _collect(train_loader(train_set, _config(), NORM, epoch=2))
    others = [_collect(train_loader(train_set, _config(num_workers=2), NORM, epoch=2)),
              _collect(train_loader(train_set, _config(cache=True), NORM, epoch=2, cache_dir=tmp_path / "c"))]
    for batches in others:
        assert len(batches) == len(reference)
        for mine, theirs in zip(batches, reference):
            assert mine.keys() == theirs.keys()
            assert all(torch.equal(mine[k], theirs[k]) for k in mine)
    later = _collect(train_loader(train_set, _config(), NORM, epoch=3))
    assert not torch.equal(later[0]["image"], reference[0]["image"])


def test_cached_batches_are_read_in_the_main_process_and_decoded_ones_in_workers(tmp_path, tree):
    train_set = build_train_set(parse_root(tree))
    cached = train_loader(train_set, _config(cache=True, num_workers=2), NORM, epoch=0, cache_dir=tmp_path / "c")
    decoding = train_loader(train_set, _config(num_workers=2), NORM, epoch=0)
    assert cached.num_workers == 0 and decoding.num_workers == 2
    for mine, theirs in zip(_collect(cached), _collect(decoding)):
        assert all(torch.equal(mine[k], theirs[k]) for k in mine)


def test_ranks_get_different_batches_and_the_same_number_of_steps(tree):
    train_set = build_train_set(parse_root(tree))
    loaders = [train_loader(train_set, _config(num_persons=2), NORM, epoch=0, rank=r, world_size=2) for r in (0, 1)]
    assert len(loaders[0]) == len(loaders[1]) == 3
    first = [_collect(loader) for loader in loaders]
    assert any(not torch.equal(a["index"], b["index"]) or not torch.equal(a["image"], b["image"])
               for a, b in zip(*first))


def test_the_train_loader_uses_the_cache_dir_and_its_environment_default(monkeypatch, tmp_path, tree):
    train_set = build_train_set(parse_root(tree))
    train_loader(train_set, _config(cache=True), NORM, epoch=0, cache_dir=tmp_path / "given")
    assert len(list((tmp_path / "given" / "images").glob("*.u8"))) == 1
    monkeypatch.setenv("ATZOO_CACHE_DIR", str(tmp_path / "env"))
    train_loader(train_set, _config(cache=True), NORM, epoch=0)
    assert len(list((tmp_path / "env" / "images").glob("*-32x16.u8"))) == 1


def test_eval_loader_keeps_record_order_and_matches_with_and_without_cache(tmp_path, tree):
    records = parse_root(tree)
    cached = _collect(eval_loader(records, SIZE, NORM, batch_size=5, num_workers=0, cache_dir=tmp_path / "c"))
    plain = _collect(eval_loader(records, SIZE, NORM, batch_size=5, num_workers=2, use_cache=False))
    assert [set(b) for b in cached] == [{"image", "index"}] * 5
    assert torch.cat([b["index"] for b in cached]).tolist() == list(range(len(records)))
    assert torch.equal(torch.cat([b["image"] for b in cached]), torch.cat([b["image"] for b in plain]))
    assert len(list((tmp_path / "c" / "images").glob("*.u8"))) == 1


def test_an_unreadable_image_in_a_loader_raises_a_data_error_naming_it(tree):
    broken = tree / "p010-d01-c01/cam02-f6-0002.jpg"
    broken.write_bytes(b"")
    loader = eval_loader(parse_root(tree), SIZE, NORM, batch_size=4, num_workers=0, use_cache=False)
    with pytest.raises(DataError, match=re.escape(str(broken))):
        _collect(loader)
