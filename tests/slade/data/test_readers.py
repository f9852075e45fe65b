"""Readers on tiny fixtures generated in each benchmark's standard layout (nothing is downloaded)."""
import gzip
import struct

import numpy as np
import pytest
import scipy.io

from slade import config
from slade.data.benchmark import build_benchmark
from slade.data.readers.cars import cars196
from slade.data.readers.cub import cub200, nabirds
from slade.data.readers.fashion_mnist import DEBIAN_DIR, fashion_mnist, read_idx
from slade.data.readers.folders import class_folders, unlabeled_folder
from slade.data.readers.inshop import inshop
from helpers.images import write_image


def make_cub(root, n_classes=4, per_class=3, ids=None):
    """CUB_200_2011/{images.txt, image_class_labels.txt, classes.txt, images/...}; ids: image id per item."""
    base = root / "CUB_200_2011"
    images, labels, classes = [], [], []
    item = 0
    for c in range(1, n_classes + 1):
        folder = f"{c:03d}.Bird_{c}"
        classes.append(f"{c} {folder}")
        for j in range(per_class):
            image_id = ids(item) if ids else str(item + 1)
            write_image(base / "images" / folder / f"img_{j}.jpg", item)
            images.append(f"{image_id} {folder}/img_{j}.jpg")
            labels.append(f"{image_id} {c}")
            item += 1
    (base / "images.txt").write_text("\n".join(images) + "\n")
    (base / "image_class_labels.txt").write_text("\n".join(labels) + "\n")
    (base / "classes.txt").write_text("\n".join(classes) + "\n")
    return root


def test_cub_class_split(tmp_path):
    root = make_cub(tmp_path)
    train, test = cub200(str(root), "train"), cub200(str(root), "test")
    assert len(train) == 6 and len(test) == 6
    assert train.class_names == ["001.Bird_1", "002.Bird_2"] and test.class_names == ["003.Bird_3", "004.Bird_4"]
    assert sorted(set(test.labels.tolist())) == [0, 1]
    assert train.load(0).size == (12, 12)
    assert len(cub200(str(root / "CUB_200_2011"), "all")) == 12  # the inner directory works as root too


def test_nabirds_string_ids_and_sparse_classes(tmp_path):
    root = tmp_path / "nab"
    base = make_cub(root, n_classes=3, per_class=2, ids=lambda i: f"{i:08x}-ab-cd")
    (base / "CUB_200_2011").rename(base / "nabirds")
    lines = (base / "nabirds" / "image_class_labels.txt").read_text().replace(" 3\n", " 917\n")
    (base / "nabirds" / "image_class_labels.txt").write_text(lines)
    birds = nabirds(str(base))
    assert len(birds) == 6 and birds.num_classes == 3
    assert birds.class_names[-1] == "917"  # not in classes.txt: the id stands in for the name
    assert birds.load(5).mode == "RGB"


def test_cars196_from_annotations_mat(tmp_path):
    records = []
    for i in range(8):
        path = f"car_ims/{i + 1:06d}.jpg"
        write_image(tmp_path / path, i)
        records.append({"relative_im_path": path, "bbox_x1": 0, "bbox_y1": 0, "bbox_x2": 5, "bbox_y2": 5,
                        "class": i % 4 + 1, "test": i % 2})
    annotations = np.array([tuple(r.values()) for r in records],
                           dtype=[(k, object) for k in records[0]])
    scipy.io.savemat(tmp_path / "cars_annos.mat",
                     {"annotations": annotations[None, :],
                      "class_names": np.array([["AM General"], ["Acura"], ["Audi"], ["BMW"]], dtype=object).T})
    train, test = cars196(str(tmp_path), "train"), cars196(str(tmp_path), "test")
    assert train.class_names == ["AM General", "Acura"] and test.class_names == ["Audi", "BMW"]
    assert len(train) == 4 and len(test) == 4
    assert test.paths[0].endswith("car_ims/000003.jpg")


def test_inshop_partition(tmp_path):
    rows = [("img/WOMEN/Dresses/id_01/01_front.jpg", "id_01", "train"),
            ("img/WOMEN/Dresses/id_01/02_side.jpg", "id_01", "train"),
            ("img/MEN/Tees/id_02/01_front.jpg", "id_02", "query"),
            ("img/MEN/Tees/id_02/02_back.jpg", "id_02", "gallery"),
            ("img/MEN/Tees/id_03/01_front.jpg", "id_03", "gallery")]
    for i, (path, _, _) in enumerate(rows):
        write_image(tmp_path / "Img" / path, i)
    (tmp_path / "Eval").mkdir()
    text = f"{len(rows)}\nimage_name item_id evaluation_status\n" + "".join(f"{p}  {i}  {s}\n" for p, i, s in rows)
    (tmp_path / "Eval" / "list_eval_partition.txt").write_text(text)
    query, gallery = inshop(str(tmp_path), "query"), inshop(str(tmp_path), "gallery")
    assert len(inshop(str(tmp_path), "train")) == 2 and len(query) == 1 and len(gallery) == 2
    assert query.class_names == gallery.class_names  # one label space: equal labels mean the same item
    assert query.labels[0] == gallery.labels[0] != gallery.labels[1]
    assert gallery.load(1).size == (12, 12)
    with pytest.raises(ValueError, match="split"):
        inshop(str(tmp_path), "val")


def test_class_folders_and_unlabeled_folder(tmp_path):
    for make in ("audi", "bmw"):
        for model in ("a", "b"):
            for j in range(2):
                write_image(tmp_path / make / model / f"{j}.png", j)
    write_image(tmp_path / "stray.png", 9)
    two_level = class_folders(str(tmp_path), "all", class_depth=2)
    assert two_level.class_names == ["audi/a", "audi/b", "bmw/a", "bmw/b"] and len(two_level) == 8
    assert two_level.notes["unclassified"] == 1
    train = class_folders(str(tmp_path), "train", class_depth=2)
    assert train.class_names == ["audi/a", "audi/b"]
    assert class_folders(str(tmp_path), "all").class_names == ["audi", "bmw"]
    unlabeled = unlabeled_folder(str(tmp_path))
    assert len(unlabeled) == 9 and (unlabeled.labels == -1).all()
    with pytest.raises(ValueError, match="class_depth"):
        class_folders(str(tmp_path), class_depth=0)


def write_idx(path, array):
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + array.astype(np.uint8).tobytes())


def test_fashion_mnist_idx_fixture(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (5, 28, 28))
    labels = np.array([0, 9, 3, 3, 1])
    for stem in ("train", "t10k"):
        write_idx(tmp_path / f"{stem}-images-idx3-ubyte.gz", images)
        write_idx(tmp_path / f"{stem}-labels-idx1-ubyte.gz", labels)
    data = fashion_mnist("test", str(tmp_path))
    np.testing.assert_array_equal(data.arrays, images)
    assert data.labels.tolist() == labels.tolist() and data.class_names[9] == "Ankle boot"
    (tmp_path / "bad").write_bytes(b"\x00\x00\x0d\x01")
    with pytest.raises(ValueError, match="not a uint8 IDX"):
        read_idx(tmp_path / "bad")
    with pytest.raises(FileNotFoundError, match="dataset-fashion-mnist"):
        fashion_mnist("train", str(tmp_path / "nowhere"))


def test_fashion_mnist_from_debian_package():
    # CI installs dataset-fashion-mnist; the test checks the real files the package ships.
    train, test = fashion_mnist("train"), fashion_mnist("test")
    assert len(train) == 60000 and len(test) == 10000 and train.arrays.shape[1:] == (28, 28)
    assert np.bincount(test.labels).tolist() == [1000] * 10
    assert DEBIAN_DIR == "/usr/share/datasets/fashion-mnist"


def test_build_benchmark_with_validation_and_unlabeled(tmp_path):
    root = make_cub(tmp_path / "cub", n_classes=8, per_class=2)
    for i in range(3):
        write_image(tmp_path / "extra" / f"{i}.jpg", i)
    cfg = config.DataConfig(name="cub200", root=str(root), unlabeled_root=str(tmp_path / "extra"),
                            val_fraction=0.5, seed=3)
    bench = build_benchmark(cfg)
    assert bench.labeled.num_classes == 2 and bench.val.num_classes == 2 and bench.test.num_classes == 4
    assert set(bench.labeled.class_names).isdisjoint(bench.val.class_names)
    assert len(bench.unlabeled) == 3 and bench.photo
    with pytest.raises(ValueError, match="data.root"):
        build_benchmark(config.DataConfig(name="cars196"))
    with pytest.raises(ValueError, match="data.name"):
        build_benchmark(config.DataConfig(name="imagenet"))


@pytest.mark.parametrize("photo, expected", [(None, True), (False, False), (True, True)])
def test_data_photo_overrides_the_readers_kind_of_image(tmp_path, photo, expected):
    """Folders are read as photos unless data.photo says otherwise (icons, logos, renders); then training and
    evaluation only resize them."""
    for c in range(4):
        for j in range(2):
            write_image(tmp_path / f"class{c}" / f"{j}.png", 2 * c + j)
    cfg = config.DataConfig(name="folders", root=str(tmp_path), val_fraction=0.0, photo=photo)
    assert build_benchmark(cfg).photo is expected


def test_data_photo_is_checked():
    with pytest.raises(config.ConfigError, match="data.photo"):
        config.build(None, [("data.photo", "sometimes")])
