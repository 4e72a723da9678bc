"""`edge-fer-classify` at its boundaries, as a hostile user would drive it: special files,
decompression bombs and huge files as inputs; stdout into a closed pipe, a full device or
nothing; --annotate onto an input, through a planted symlink, two images with one name, onto a
full file system. Each is one line (or a quiet stop) and nothing already on disk is lost."""

from __future__ import annotations

import io
import json
import os
import resource
import shutil
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_fer.core.image_header import HeaderError, image_size
from edge_fer.core.safe_io import EXIT_BROKEN_PIPE
from edge_fer.faces.detect import detection_image
from edge_fer.faces.finder import PHOTO_TILE

ROOT = Path(__file__).resolve().parents[1]
CLASSIFY = [sys.executable, "-m", "edge_fer.apps.classify", "--no-detect"]


def run(*args: str, cwd: Path, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*CLASSIFY, *args], cwd=cwd, capture_output=True, text=True, timeout=60, env=_env(), **kw
    )


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(w: int, h: int) -> bytes:
    """A PNG of a few KB whose header claims w x h gray pixels (zeros compress ~1000:1)."""
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", zlib.compress(bytes((w + 1) * 64), 9))
        + _chunk(b"IEND", b"")
    )


def jpeg_claiming(w: int, h: int, real: bytes) -> bytes:
    """A real JPEG whose frame header is rewritten to claim w x h pixels."""
    data = bytearray(real)
    at = data.find(b"\xff\xc0")
    struct.pack_into(">HH", data, at + 5, h, w)
    return bytes(data)


@pytest.fixture()
def face(tmp_path: Path, data_dir: Path) -> Path:
    """A real 48x48 FER2013 face."""
    src = sorted((data_dir / "test" / "happy").glob("*.jpg"))[0]
    out = tmp_path / "face.jpg"
    shutil.copy(src, out)
    return out


def lines(proc: subprocess.CompletedProcess) -> list[dict]:
    return [json.loads(line) for line in proc.stdout.splitlines()]


def one_line_errors(proc: subprocess.CompletedProcess, count: int) -> list[str]:
    errors = proc.stderr.strip().splitlines()
    assert "Traceback" not in proc.stderr and len(errors) == count, proc.stderr
    return errors


def test_special_huge_and_bomb_inputs_are_refused_without_waiting(tmp_path, face):
    os.mkfifo(tmp_path / "x.jpg")  # no writer: an open for reading would wait forever
    (tmp_path / "bomb.png").write_bytes(png_bomb(32000, 32000))
    (tmp_path / "bomb.jpg").write_bytes(jpeg_claiming(60000, 60000, face.read_bytes()))
    with open(tmp_path / "huge.jpg", "wb") as f:  # 2.2 GB, sparse
        f.truncate(2200 << 20)
    (tmp_path / "cut.png").write_bytes(png_bomb(64, 64)[:20])
    (tmp_path / "ok.png").write_bytes(png_bomb(64, 64)[:-12])  # IEND missing: decodes or not, one line
    args = ["x.jpg", "bomb.png", "bomb.jpg", "huge.jpg", "/dev/zero", "cut.png", str(face)]
    proc = run(*args, cwd=tmp_path)
    assert proc.returncode == 2
    assert [r["image"] for r in lines(proc)] == [str(face)]
    errors = one_line_errors(proc, 6)
    for needle in (
        "x.jpg is a FIFO, not a regular file",
        "bomb.png: the PNG header says 32000x32000 pixels, past the limit",
        "bomb.jpg: the JPEG header says 60000x60000 pixels",
        "huge.jpg is 2306867200 bytes; the limit is",
        "/dev/zero is a character device",
        "cut.png: not an image OpenCV can decode (an image cut short",
    ):
        assert sum(needle in e for e in errors) == 1, (needle, errors)


def test_stdout_into_head_stops_quietly_with_141(tmp_path, face):
    for i in range(40):
        shutil.copy(face, tmp_path / f"f{i:02d}.jpg")
    proc = subprocess.Popen(
        [*CLASSIFY, str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(), cwd=tmp_path
    )
    first = proc.stdout.readline()
    proc.stdout.close()  # as `head -1` does
    code = proc.wait(60)
    stderr = proc.stderr.read().decode()
    proc.stderr.close()
    assert json.loads(first)["face"] == 1
    assert code == EXIT_BROKEN_PIPE == 141 and stderr == "", stderr


def test_stdout_on_dev_full_or_closed_is_one_line(tmp_path, face):
    with open("/dev/full", "w") as full:
        proc = subprocess.run(
            [*CLASSIFY, str(face)], stdout=full, stderr=subprocess.PIPE, text=True, timeout=60, env=_env()
        )
    assert proc.returncode == 2
    assert one_line_errors(proc, 1)[0].endswith(
        "cannot write the results to stdout (No space left on device); stopped"
    )
    shell = f"exec {' '.join(CLASSIFY)} {face} >&-"
    proc = subprocess.run(["sh", "-c", shell], capture_output=True, text=True, timeout=60, env=_env())
    assert proc.returncode == 2 and "stdout is closed" in one_line_errors(proc, 1)[0]


def test_annotate_never_writes_onto_an_input(tmp_path, face):
    before = face.read_bytes()
    os.link(face, tmp_path / "hard.jpg")
    (tmp_path / "soft.jpg").symlink_to(face)
    for target in (str(face), "hard.jpg", "soft.jpg", f"../{tmp_path.name}/./face.jpg"):
        proc = run(str(face), "--annotate", target, cwd=tmp_path)
        assert proc.returncode == 2 and proc.stdout == "", (target, proc.stdout)
        assert "names the same file as the input image" in one_line_errors(proc, 1)[0]
    assert face.read_bytes() == before


def test_annotate_replaces_a_planted_symlink_instead_of_following_it(tmp_path, face):
    out = tmp_path / "out"
    out.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (out / "face.annotated.jpg").symlink_to(victim)
    proc = run(str(face), "--annotate", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert victim.read_text() == "precious"
    written = out / "face.annotated.jpg"
    assert not written.is_symlink() and cv2.imread(str(written)).shape == (48, 48, 3)
    assert lines(proc)[0]["annotated"] == str(written)


def test_two_images_with_one_name_get_two_annotated_files(tmp_path, face, data_dir):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    shutil.copy(face, tmp_path / "a" / "p.jpg")
    shutil.copy(sorted((data_dir / "test" / "sad").glob("*.jpg"))[0], tmp_path / "b" / "p.jpg")
    proc = run("a/p.jpg", "b/p.jpg", "a/p.jpg", "--annotate", "out", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    targets = [r["annotated"] for r in lines(proc)]
    assert targets == ["out/p.annotated.jpg", "out/p-2.annotated.jpg", "out/p-3.annotated.jpg"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(Path(t).name for t in targets)
    a, b = (cv2.imread(str(tmp_path / t)) for t in targets[:2])
    assert np.abs(a.astype(int) - b).sum() > 0  # two different pictures, neither lost


def test_annotating_a_folder_into_itself_twice_does_not_feed_on_its_output(tmp_path, face):
    shutil.copy(face, tmp_path / "p.jpg")
    for again in (False, True):
        proc = run(str(tmp_path), "--annotate", str(tmp_path), cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert [Path(r["image"]).name for r in lines(proc)] == ["face.jpg", "p.jpg"]
        assert ("left out 2 annotated copies from an earlier run" in proc.stderr) == again, proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "face.annotated.jpg",
        "face.jpg",
        "p.annotated.jpg",
        "p.jpg",
    ]


def test_annotate_targets_that_cannot_be_images_are_refused_before_any_work(tmp_path, face):
    (tmp_path / "noext").write_text("mine")
    (tmp_path / "other.jpg").write_text("x")
    os.mkfifo(tmp_path / "pipe.png")
    cases = {
        "noext": "is an existing file without an image suffix",
        "pipe.png": "is a FIFO, not a regular file",
        "one.png": "names an image file but there are 2 images; name a folder",
        "/proc/version/x": "cannot be",
    }
    for target, needle in cases.items():
        extra = ["other.jpg"] if target == "one.png" else []
        proc = run(str(face), *extra, "--annotate", target, cwd=tmp_path)
        assert proc.returncode == 2 and proc.stdout == "", (target, proc.stdout)
        assert needle in one_line_errors(proc, 1)[0], (target, proc.stderr)
    assert (tmp_path / "noext").read_text() == "mine" and not (tmp_path / "one.png").exists()


@pytest.fixture()
def small_fs(tmp_path: Path):
    """A real 96 KiB tmpfs (skipped where this user may not mount)."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=96k", "tmpfs", str(mnt)], capture_output=True
    ).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield mnt
    subprocess.run(["umount", str(mnt)], check=True)


def test_a_full_file_system_keeps_the_old_annotated_file(small_fs, tmp_path, data_dir):
    big = tmp_path / "big.png"
    rng = np.random.default_rng(0)
    cv2.imwrite(str(big), rng.integers(0, 255, (160, 160, 3), dtype=np.uint8))  # ~77 KB as PNG
    old = small_fs / "shot.png"
    cv2.imwrite(str(old), np.full((48, 48, 3), 7, np.uint8))
    before = old.read_bytes()
    filler = small_fs / "filler"
    filler.write_bytes(b"\0" * (96 * 1024 - len(before) - 12 * 1024))  # leave less than big.png needs
    proc = subprocess.run(
        [sys.executable, "-m", "edge_fer.apps.classify", "--no-detect", str(big), "--annotate", str(old)],
        capture_output=True,
        text=True,
        timeout=60,
        env=_env(),
    )
    assert proc.returncode == 2
    assert "No space left on device" in one_line_errors(proc, 1)[0]
    assert old.read_bytes() == before
    assert sorted(p.name for p in small_fs.iterdir()) == ["filler", "shot.png"]  # no temp left behind


def test_image_headers_are_sized_as_opencv_would_decode_them():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 255, (37, 53, 3), dtype=np.uint8)
    for ext, kind in (
        (".jpg", "JPEG"),
        (".png", "PNG"),
        (".bmp", "BMP"),
        (".webp", "WebP"),
        (".tif", "TIFF"),
        (".ppm", "PNM"),
        (".pam", "PNM"),
        (".ras", "Sun raster"),
    ):
        ok, data = cv2.imencode(ext, image)
        assert ok and image_size(data.tobytes()) == (kind, 53, 37), ext
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])
    assert image_size(data.tobytes()) == ("JPEG", 53, 37)
    assert image_size(png_bomb(32000, 32000)) == ("PNG", 32000, 32000)
    for junk in (
        b"",
        b"hello",
        b"\xff\xd8\xff",
        b"\x89PNG\r\n\x1a\n",
        b"BM",
        b"RIFF\0\0\0\0WEBPVP8X",
        b"II*\0",
    ):
        with pytest.raises(HeaderError):
            image_size(junk)
    # CPU traps: 200 MB of fill bytes, 50 million empty segments before any frame header
    t0 = time.monotonic()
    for trap in (b"\xff\xd8\xff" + b"\xff" * (200 << 20), b"\xff\xd8" + b"\xff\xfe\x00\x02" * (50 << 20)):
        with pytest.raises(HeaderError):
            image_size(trap)
    assert time.monotonic() - t0 < 5


@pytest.mark.fast
def test_detection_scaling_is_area_interpolated_and_never_empty():
    rng = np.random.default_rng(2)
    image = rng.integers(0, 255, (480, 960, 3), dtype=np.uint8)
    small, scale = detection_image(image, 320)
    expected = cv2.resize(image, (320, 160), interpolation=cv2.INTER_AREA)
    assert scale == 3.0 and np.array_equal(small, expected)
    sliver, _ = detection_image(np.zeros((2, 2000, 3), np.uint8), 480)
    assert sliver.shape == (1, 480, 3)
    same, one = detection_image(image, 2000)
    assert same is image and one == 1.0


def test_ctrl_c_stops_quietly_with_130(tmp_path, face):
    for i in range(600):  # more lines than a pipe holds: it blocks writing, unread
        shutil.copy(face, tmp_path / f"f{i:03d}.jpg")
    proc = subprocess.Popen(
        [*CLASSIFY, str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env()
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and _state(proc.pid) != "S":
            time.sleep(0.2)
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        code = proc.wait(60)
    finally:
        proc.kill()
        stderr = proc.stderr.read().decode()
        proc.stdout.close()
        proc.stderr.close()
    assert code == 130 and "Traceback" not in stderr, stderr


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return ""


def test_a_long_input_name_gets_an_annotated_name_that_fits(tmp_path, face):
    long = tmp_path / ("é" * 120 + ".jpg")  # 244 bytes: with ".annotated" it would pass 255
    shutil.copy(face, long)
    proc = run(str(long), str(face), "--annotate", "out", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    names = [Path(r["annotated"]).name for r in lines(proc)]
    assert all(len(os.fsencode(n)) <= 255 and n.endswith(".annotated.jpg") for n in names), names
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(names)


def _limited(mb: int):
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (mb << 20, mb << 20))

    return apply


@pytest.mark.slow
def test_too_little_memory_for_an_image_is_one_line_per_image(tmp_path, face):
    """Under address-space limits from just enough to start up to enough for everything, each
    step of a 24-megapixel image (read, decode, classify, annotate) that runs out of memory is
    one line, and the small image beside it is still classified."""
    big = tmp_path / "big.png"
    noise = np.random.default_rng(5).integers(0, 255, (4000, 6000, 3), dtype=np.uint8)
    cv2.imwrite(str(big), noise, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    del noise
    start = next(  # the smallest limit (in 100 MB steps) the program starts under at all
        mb
        for mb in range(300, 4000, 100)
        if subprocess.run(
            [*CLASSIFY, str(face)], preexec_fn=_limited(mb), capture_output=True, env=_env(), timeout=60
        ).returncode
        == 0
    )
    codes = set()
    for mb in range(start, start + 700, 100):
        proc = subprocess.run(
            [*CLASSIFY, str(big), str(face), "--annotate", "out"],
            cwd=tmp_path,
            preexec_fn=_limited(mb),
            capture_output=True,
            text=True,
            env=_env(),
            timeout=120,
        )
        codes.add(proc.returncode)
        assert proc.returncode in (0, 2) and "Traceback" not in proc.stderr, (mb, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) <= 1, (mb, proc.stderr)
        assert str(face) in proc.stdout, (mb, proc.stdout)  # the small one is still classified
        if proc.returncode == 2:
            assert "memory" in proc.stderr, (mb, proc.stderr)
    assert 2 in codes, "no limit in the sweep was tight enough to test anything"


@pytest.mark.fast
def test_annotated_names_differ_even_on_a_case_blind_file_system(tmp_path, face):
    from edge_fer.apps.classify import plan_annotations

    (tmp_path / "x").mkdir()
    images = [tmp_path / "P.jpg", tmp_path / "x" / "p.jpg", tmp_path / "p.JPG"]
    for image in images:
        shutil.copy(face, image)
    names = [p.name for p in plan_annotations(tmp_path / "out", images)]
    assert names == ["P.annotated.jpg", "p-2.annotated.jpg", "p-3.annotated.JPG"]
    assert len({n.casefold() for n in names}) == 3


def test_every_image_the_photo_path_shrinks_is_area_averaged(tmp_path, monkeypatch, shipped_model):
    """The class of `cv2.resize(image, size, cv2.INTER_AREA)` (the flag taken as `dst`, so the
    shrink is bilinear and aliased): every image edge-fer-classify shrinks on a large photo (the
    photo itself over frames.max_pixels, the detection image, the photo search's tiles, each
    face crop) and on a large --no-detect crop equals an INTER_AREA reference of it."""
    from edge_fer.apps.classify import main

    resize = cv2.resize
    portrait = cv2.imread(str(ROOT / "edge_fer" / "samples" / "london_022_smiling.jpg"))
    photo = cv2.resize(portrait, (1200, 1800), interpolation=cv2.INTER_CUBIC)
    noise = np.random.default_rng(3).integers(-12, 13, photo.shape)  # sensor grain, a real photo's
    photo = np.clip(photo + noise, 0, 255).astype(np.uint8)
    big, crop = tmp_path / "big.png", tmp_path / "crop.png"
    cv2.imwrite(str(big), photo)
    cv2.imwrite(str(crop), photo[550:1250, 250:950])  # the 700 px face alone
    config = tmp_path / "config.yaml"
    config.write_text("frames:\n  max_pixels: 2000000\n")  # the photo's 2.16 MP are over it
    # The test has teeth: a bilinear shrink of this photo is far from the area-averaged one.
    area = resize(photo, (480, 720), interpolation=cv2.INTER_AREA)
    bilinear = resize(photo, (480, 720), None, 0, 0, cv2.INTER_LINEAR)
    assert np.abs(area.astype(int) - bilinear).mean() > 2

    shrinks, wrong = [], []

    def checked(src: np.ndarray, *args, **kwargs) -> np.ndarray:
        out = resize(src, *args, **kwargs)
        if out.shape[0] < src.shape[0] or out.shape[1] < src.shape[1]:
            size = (out.shape[1], out.shape[0])
            shrinks.append(size)
            if not np.array_equal(out, resize(src, size, interpolation=cv2.INTER_AREA)):
                wrong.append(f"{src.shape[1]}x{src.shape[0]} -> {size[0]}x{size[1]}")
        return out

    monkeypatch.setattr(cv2, "resize", checked)
    out = io.StringIO()
    common = ["--config", str(config), "--model", str(shipped_model)]
    assert main([*common, "--detector", "yunet", str(big)], out) == 0
    assert main([*common, "--no-detect", str(crop)], out) == 0
    faces = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [f["face"] for f in faces] == [1, 1] and faces[0]["label"] == faces[1]["label"] == "happy"
    assert not wrong, f"shrunk without area averaging: {wrong}"
    scaled = (1154, 1732)  # frames.max_pixels reached with the aspect kept
    tile = (PHOTO_TILE, PHOTO_TILE)
    assert {scaled, (480, 720), tile, (48, 48)} <= set(shrinks), sorted(set(shrinks))
