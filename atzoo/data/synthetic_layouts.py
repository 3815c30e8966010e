"""Small synthetic datasets in the ten public layouts, drawn by the synthetic AT-USTC's renderer.

Each writer lays out a handful of persons exactly as its dataset does (folders, file names, list
and id files, visible and infrared cameras, clothes changes), so every reader, every protocol and
the whole zero-shot test run here without any licensed data. Persons are rendered with ids from
`PERSON_OFFSET` on, so a model trained on the synthetic AT-USTC never saw them. A dataset camera
is drawn as one of the renderer's cameras (visible 1-8, infrared 9-16). The same layout, preset
and seed give the same bytes.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image

from atzoo.data.layouts import LAYOUT_NAMES, get_layout
from atzoo.data.layouts.base import INFRARED, VISIBLE
from atzoo.data.synthetic import DEFAULT, TINY, Renderer, SynthConfig, publish_dataset

GENERATOR_VERSION = 1
PERSON_OFFSET = 5000
PRESETS = {"tiny": replace(TINY, seed=7), "default": replace(DEFAULT, seed=7)}


@dataclass(frozen=True)
class Shot:
    """Images of one person in one outfit seen by one dataset camera, written to `paths`."""

    person: int
    clothes: int
    camera: int
    modality: int
    paths: tuple[str, ...]


class LayoutWriter:
    """Renders shots into a staging folder; `render_person` keeps train and test persons apart."""

    def __init__(self, root: Path, config: SynthConfig, seed_offset: int):
        self.root = root
        self.config = config
        self.renderer = Renderer(config)
        self.seed_offset = seed_offset
        self.rng = np.random.default_rng([config.seed, seed_offset])

    def shot(self, shot: Shot, *, render_person: int | None = None) -> None:
        person = PERSON_OFFSET + self.seed_offset * 1000 + (shot.person if render_person is None else render_person)
        camera = (shot.camera - 1) % 8 + (1 if shot.modality == VISIBLE else 9)
        images = self.renderer.clip_images(person, shot.clothes, camera, len(shot.paths))
        for array, relative in zip(images, shot.paths):
            path = self.root / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            image = Image.fromarray(array)
            suffix = path.suffix.lower()
            if suffix == ".png":
                image.save(path, format="PNG")
            elif suffix == ".bmp":
                image.save(path, format="BMP")
            else:
                image.save(path, format="JPEG", quality=self.config.jpeg_quality)

    def text(self, relative: str, lines: list[str]) -> None:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


TRAIN_PERSONS = (1, 2, 3)
TEST_PERSONS = (4, 5, 6, 7, 8, 9)


def _market_like(w: LayoutWriter, prefix: str, name: Callable[[int, int, int], str], cameras: tuple[int, ...],
                 extras: bool) -> None:
    """bounding_box_train/, query/ (one image per test person and camera of the first two),
    bounding_box_test/ (the rest), plus distractors and junk boxes when `extras`."""
    for person in TRAIN_PERSONS:
        for camera in cameras[:2]:
            w.shot(Shot(person, 1, camera, VISIBLE,
                        tuple(f"{prefix}bounding_box_train/{name(person, camera, i)}" for i in range(2))))
    for person in TEST_PERSONS:
        for camera in cameras:
            paths = [f"{prefix}bounding_box_test/{name(person, camera, i)}" for i in range(3)]
            if camera in cameras[:2]:
                paths[0] = f"{prefix}query/{name(person, camera, 0)}"
            w.shot(Shot(person, 1, camera, VISIBLE, tuple(paths)))
    if extras:
        w.shot(Shot(0, 1, cameras[-1], VISIBLE, tuple(f"{prefix}bounding_box_test/{name(0, cameras[-1], 50 + i)}"
                                                      for i in range(3))), render_person=900)
        w.shot(Shot(-1, 1, cameras[0], VISIBLE, tuple(f"{prefix}bounding_box_test/{name(-1, cameras[0], 60 + i)}"
                                                      for i in range(2))), render_person=901)


def write_market1501(w: LayoutWriter) -> None:
    def name(person: int, camera: int, i: int) -> str:
        return f"{'-1' if person < 0 else f'{person:04d}'}_c{camera}s1_{100 * person % 1000000 + i:06d}_0{i % 10}.jpg"
    _market_like(w, "", name, (1, 2, 3, 4), extras=True)


def write_cuhk03(w: LayoutWriter) -> None:
    for kind in ("detected", "labeled"):
        _market_like(w, f"{kind}/", lambda person, camera, i: f"{person:04d}_c{camera}_{i + 1}.png", (1, 2),
                     extras=False)


def write_msmt17(w: LayoutWriter) -> None:
    lists: dict[str, list[str]] = {"list_train.txt": [], "list_val.txt": [], "list_query.txt": [],
                                   "list_gallery.txt": []}
    for index, person in enumerate(TRAIN_PERSONS):
        entries = [f"{person:04d}/{person:04d}_{i:03d}_{camera:02d}_0303morning_{i:04d}_0.jpg"
                   for camera in (1, 2) for i in range(2)]
        w.shot(Shot(person, 1, 1, VISIBLE, tuple(f"train/{e}" for e in entries[:2])))
        w.shot(Shot(person, 1, 2, VISIBLE, tuple(f"train/{e}" for e in entries[2:])))
        lists["list_val.txt" if index == 0 else "list_train.txt"] += [f"{e} {person}" for e in entries]
    for person in TEST_PERSONS:
        for camera in (3, 7, 12):
            entries = [f"{person:04d}/{person:04d}_{10 * camera + i:03d}_{camera:02d}_0113noon_{i:04d}_0.jpg"
                       for i in range(3)]
            w.shot(Shot(person, 1, camera, VISIBLE, tuple(f"test/{e}" for e in entries)), render_person=100 + person)
            lists["list_query.txt" if camera != 12 else "list_gallery.txt"].append(f"{entries[0]} {person}")
            lists["list_gallery.txt"] += [f"{e} {person}" for e in entries[1:]]
    for list_name, lines in lists.items():
        w.text(list_name, lines)


SYSU_CAMERAS = {1: VISIBLE, 2: VISIBLE, 3: INFRARED, 4: VISIBLE, 5: VISIBLE, 6: INFRARED}


def write_sysu_mm01(w: LayoutWriter) -> None:
    for person in TRAIN_PERSONS + TEST_PERSONS:
        for camera, modality in SYSU_CAMERAS.items():
            w.shot(Shot(person, 1, camera, modality,
                        tuple(f"cam{camera}/{person:04d}/{i:04d}.jpg" for i in range(1, 4))))
    w.text("exp/train_id.txt", [",".join(str(p) for p in TRAIN_PERSONS[:2])])
    w.text("exp/val_id.txt", [str(TRAIN_PERSONS[2])])
    w.text("exp/test_id.txt", [",".join(str(p) for p in TEST_PERSONS)])


def write_regdb(w: LayoutWriter) -> None:
    persons = TRAIN_PERSONS + TEST_PERSONS
    files: dict[tuple[int, str], list[str]] = {}
    for person in persons:
        sex = "female" if person % 2 else "male"
        for modality, folder, letter in ((VISIBLE, "Visible", "v"), (INFRARED, "Thermal", "t")):
            paths = tuple(f"{folder}/{person}/{sex}_front_{letter}_{100 * person + i:05d}_{person}.bmp"
                          for i in range(3))
            w.shot(Shot(person, 1, 1, modality, paths))
            files[person, folder] = list(paths)
    for trial in range(1, 11):
        order = np.random.default_rng([w.config.seed, trial]).permutation(persons)
        half = len(order) // 2
        for part, chosen in (("train", sorted(order[:half])), ("test", sorted(order[half:]))):
            for kind, folder in (("visible", "Visible"), ("thermal", "Thermal")):
                w.text(f"idx/{part}_{kind}_{trial}.txt",
                       [f"{path} {label}" for label, chosen_person in enumerate(chosen)
                        for path in files[int(chosen_person), folder]])


LLCM_VISIBLE_CAMERAS = (1, 2, 3, 4)
LLCM_INFRARED_CAMERAS = (1, 2, 4)


def write_llcm(w: LayoutWriter) -> None:
    for person in TEST_PERSONS:
        for folder, modality, cameras in (("test_vis", VISIBLE, LLCM_VISIBLE_CAMERAS),
                                          ("test_nir", INFRARED, LLCM_INFRARED_CAMERAS)):
            for camera in cameras:
                w.shot(Shot(person, 1, camera, modality, tuple(
                    f"{folder}/cam{camera}/{person:04d}/{person:04d}_c{camera:02d}_s{i}_{folder[-3:]}.jpg"
                    for i in range(3))))
    lists: dict[str, list[str]] = {"vis": [], "nir": []}
    for label, person in enumerate(TRAIN_PERSONS):
        for kind, modality in (("vis", VISIBLE), ("nir", INFRARED)):
            paths = tuple(f"{kind}/{person:04d}/{person:04d}_c01_s{i}_f{10 * i}_{kind}.jpg" for i in range(2))
            w.shot(Shot(person, 1, 1, modality, paths))
            lists[kind] += [f"{path} {label}" for path in paths]
    w.text("idx/train_vis.txt", lists["vis"])
    w.text("idx/train_nir.txt", lists["nir"])
    w.text("idx/test_id.txt", [",".join(str(p) for p in TEST_PERSONS)])


def write_prcc(w: LayoutWriter) -> None:
    for person in TRAIN_PERSONS:
        part = "val" if person == TRAIN_PERSONS[-1] else "train"
        for letter, camera, clothes in (("A", 1, 1), ("B", 2, 1), ("C", 3, 2)):
            w.shot(Shot(person, clothes, camera, VISIBLE, tuple(
                f"rgb/{part}/{person:03d}/{letter}_cropped_rgb{10 * camera + i:03d}.jpg" for i in range(2))))
    for person in TEST_PERSONS:
        for letter, camera, clothes in (("A", 1, 1), ("B", 2, 1), ("C", 3, 2)):
            w.shot(Shot(person, clothes, camera, VISIBLE, tuple(
                f"rgb/test/{letter}/{person:03d}/cropped_rgb{10 * camera + i:03d}.jpg" for i in range(3))))


def write_ltcc(w: LayoutWriter) -> None:
    for person in TRAIN_PERSONS:
        for clothes, camera in ((1, 1), (2, 3)):
            w.shot(Shot(person, clothes, camera, VISIBLE, tuple(
                f"train/{person:03d}_{clothes}_c{camera}_{1000 * camera + i:06d}.png" for i in range(2))))
    for person in TEST_PERSONS:
        outfits = ((1, 1), (1, 2), (2, 3), (2, 4)) if person < 8 else ((1, 1), (1, 2), (1, 5))
        for clothes, camera in outfits:
            paths = [f"test/{person:03d}_{clothes}_c{camera}_{1000 * camera + i:06d}.png" for i in range(3)]
            if camera in (1, 3):
                paths[0] = f"query/{person:03d}_{clothes}_c{camera}_{1000 * camera:06d}.png"
            w.shot(Shot(person, clothes, camera, VISIBLE, tuple(paths)))


def write_deepchange(w: LayoutWriter) -> None:
    def name(person: int, camera: int, tracklet: int, i: int) -> str:
        return f"P{person:04d}_C{camera:02d}_2020{tracklet + 5:02d}13_1{tracklet}{camera}000_{i + 1:06d}_bbox.jpg"

    for person in TRAIN_PERSONS:
        for tracklet, camera in ((1, 1), (2, 2)):
            w.shot(Shot(person, tracklet, camera, VISIBLE,
                        tuple(f"train-set/{name(person, camera, tracklet, i)}" for i in range(2))))
    for index, person in enumerate(TEST_PERSONS):
        split = "val-set" if index == 0 else "test-set"
        for tracklet, camera in ((1, 1), (1, 2), (2, 3), (2, 1)):
            paths = [f"{split}-gallery/{name(person, camera, tracklet, i)}" for i in range(3)]
            if (tracklet, camera) in ((1, 1), (2, 3)):
                paths[0] = f"{split}-query/{name(person, camera, tracklet, 0)}"
            w.shot(Shot(person, tracklet, camera, VISIBLE, tuple(paths)))


def write_vc_clothes(w: LayoutWriter) -> None:
    outfits = {1: 1, 2: 1, 3: 1, 4: 2}
    for person in TRAIN_PERSONS:
        for camera, clothes in outfits.items():
            w.shot(Shot(person, clothes, camera, VISIBLE, tuple(
                f"train/{person:04d}-{camera:02d}-{clothes:02d}-{i + 1:02d}.jpg" for i in range(2))))
    for person in TEST_PERSONS:
        for camera, clothes in outfits.items():
            paths = [f"gallery/{person:04d}-{camera:02d}-{clothes:02d}-{i + 1:02d}.jpg" for i in range(3)]
            paths[0] = f"query/{person:04d}-{camera:02d}-{clothes:02d}-01.jpg"
            w.shot(Shot(person, clothes, camera, VISIBLE, tuple(paths)))


WRITERS: dict[str, Callable[[LayoutWriter], None]] = {
    "market1501": write_market1501, "cuhk03": write_cuhk03, "msmt17": write_msmt17,
    "sysu-mm01": write_sysu_mm01, "regdb": write_regdb, "llcm": write_llcm, "prcc": write_prcc,
    "ltcc": write_ltcc, "deepchange": write_deepchange, "vc-clothes": write_vc_clothes,
}
assert tuple(WRITERS) == LAYOUT_NAMES


def generate_layout(root: str | os.PathLike, layout: str, config: SynthConfig = PRESETS["tiny"], *,
                    overwrite: bool = False) -> Path:
    """Write a small synthetic dataset in `layout` under `root` (staged, renamed into place when
    complete, like the synthetic AT-USTC) and return its path."""
    name = get_layout(layout).name
    seed_offset = LAYOUT_NAMES.index(name) + 1

    def write(staging: Path) -> None:
        WRITERS[name](LayoutWriter(staging, config, seed_offset))

    manifest = {"generator": "atzoo.data.synthetic_layouts", "version": GENERATOR_VERSION, "layout": name,
                "config": asdict(config)}
    return publish_dataset(root, write, manifest, overwrite=overwrite)


def synthetic_layout_of(root: str | os.PathLike) -> str | None:
    """The layout a synthetic root was generated in (from its `synthetic.json`), else None."""
    import json

    manifest = Path(root) / "synthetic.json"
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    layout = data.get("layout") if isinstance(data, dict) else None
    return layout if isinstance(layout, str) else None
