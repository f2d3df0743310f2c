#!/usr/bin/env python3
"""Write the seed corpus of the fuzz targets into fuzz/corpus/<target>/ (committed; a few KB each).

    python3 fuzz/make_seeds.py            (the JPEG seeds need Pillow; without it they are skipped)

Each seed is laid out as the target's harness reads it (fuzz/harness/*.rs). Findings of the fuzzers
are added to the same folders by hand (named finding-*), so `cargo test --test fuzz_corpus` replays
them; this script leaves files it did not write alone.
"""
import io
import json
import os
import struct

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "fuzz", "corpus")


def write(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def manifest_seeds():
    text = open(os.path.join(ROOT, "models", "ps3-tiny-4k", "manifest.json"), "rb").read()
    write("manifest", "tiny", text)
    m = json.loads(text)

    def variant(name, edit):
        v = json.loads(text)
        edit(v)
        write("manifest", name, json.dumps(v).encode())

    variant("format-version-2", lambda v: v.update(format_version=2))
    variant("budget-split", lambda v: v["geometry"].update(budget_split=[85, 341, 2133]))
    variant("budget-0", lambda v: v["geometry"].update(budget=0, budget_split=[0, 0, 0]))
    variant("dotdot", lambda v: v["files"].update({"../weights.bin": m["files"]["weights.bin"]}))
    variant("absolute", lambda v: v["files"].update({"/etc/passwd": m["files"]["weights.bin"]}))
    variant("sha-not-hex", lambda v: v["files"]["weights.bin"].update(sha256="zz" * 32))
    variant("width-64", lambda v: v["model"].update(width=64))
    variant("zero-std", lambda v: v["normalization"].update(std=[0.5, 0.0, 0.5]))
    write("manifest", "not-json", b"{ not json")
    write("manifest", "not-utf8", b"{\"format\": \"\xff\xfe\"}")
    write("manifest", "empty-object", b"{}")


def package_seeds():
    # The harness numbers the files: manifest.json, then the manifest's files in name order.
    m = json.load(open(os.path.join(ROOT, "models", "ps3-tiny-4k", "manifest.json")))
    names = ["manifest.json"] + sorted(m["files"])

    def edit(file, kind, offset, data):
        return bytes([names.index(file), kind]) + struct.pack("<I", offset) + bytes([len(data)]) + data

    write("package", "pristine", b"\x00")
    write("package", "pristine-rehashed", b"\x01")
    write("package", "weights-flipped", b"\x00" + edit("weights.bin", 0, 1000, b"\x40"))
    write("package", "lowres-flipped-rehashed", b"\x01" + edit("lowres.onnx", 0, 200, b"\xff\x00\x13"))
    write("package", "hrsel-truncated-rehashed", b"\x01" + edit("hrsel.onnx", 2, 5000, b""))
    write("package", "hrenc-inserted-rehashed", b"\x01" + edit("hrenc.onnx", 1, 64, b"\x0a\x05hello"))
    write("package", "tables-header-rehashed",
          b"\x01" + edit("tables.safetensors", 0, 9, b"{\"pos.756\":{\"dtype\":\"F32\""))
    write("package", "manifest-edited-rehashed", b"\x01" + edit("manifest.json", 0, 60, b"   \"name\": 7,"))
    write("package", "tables-removed", bytes([0x02 | (names.index("tables.safetensors") << 4)]))
    write("package", "weights-short-rehashed", b"\x01" + edit("weights.bin", 2, 1024, b""))


def frame_header(fmt, mode, w, h, strides=(0, 0, 0), splits=(0, 0), s_max=16, size=7):
    return (bytes([fmt, mode]) + struct.pack("<HH", w, h) + struct.pack("<III", *strides)
            + struct.pack("<II", *splits) + bytes([s_max, size]))


def frame_seeds():
    names = ["rgb8", "bgr8", "rgba8", "bgra8", "gray8", "yuyv", "uyvy", "nv12", "nv21", "i420"]
    bpp = [3, 3, 4, 4, 1, 2, 1, 1, 1, 1]
    pixels = bytes((i * 37 + 11) % 256 for i in range(600))
    for i, n in enumerate(names):
        w, h = 7, 5  # odd sizes: chroma of ceil(w/2) x ceil(h/2)
        stride = {5: 16, 6: 16}.get(i, w * bpp[i] + 2)
        write("frame", f"{n}-one-buffer", frame_header(i, 0, w, h, (stride, 0, 0)) + pixels)
        if i >= 7:
            write("frame", f"{n}-planes", frame_header(i, 1 | 2, w, h, (8, 8, 4), (40, 30)) + pixels)
    write("frame", "stride-too-small", frame_header(0, 0, 10, 4, (29, 0, 0)) + pixels)
    write("frame", "buffer-too-short", frame_header(0, 0, 10, 40, (30, 0, 0)) + pixels[:100])
    write("frame", "zero-size", frame_header(2, 0, 0, 4) + pixels)
    write("frame", "huge-size", frame_header(4, 0, 40000, 1) + pixels)
    write("frame", "overflow-stride", frame_header(3, 1, 10, 20000, (0xFFFFFFFF, 0, 0)) + pixels)
    try:
        from PIL import Image
    except ImportError:
        print("Pillow not found: no JPEG seeds")
        return
    img = Image.new("RGB", (9, 7))
    img.putdata([((x * 29) % 256, (y * 41) % 256, ((x + y) * 13) % 256) for y in range(7) for x in range(9)])
    for mode in ["RGB", "L"]:
        out = io.BytesIO()
        img.convert(mode).save(out, "JPEG", quality=80)
        write("frame", f"mjpeg-{mode.lower()}", frame_header(10, 0, 0, 0) + out.getvalue())


def c_api_seeds():
    def create(mode=1, budget=16, steps_sel=3, model_pick=2, out=1):
        sel = bytes([3, budget - 1]) if budget <= 48 else bytes([budget])
        return bytes([0, mode]) + sel + bytes([steps_sel, model_pick, out])

    def encode(enc=0, fmt=1, w=64, h=48, modes=(0, 0, 0), pads=(0, 0, 0), nulls=0, big=0):
        body = bytes([2, enc, fmt + 1, big])
        if big != 255:
            body += struct.pack("<H", w)
        if big != 254:
            body += struct.pack("<H", h)
        return body + bytes(modes) + struct.pack("<HHH", *pads) + bytes([nulls]) + bytes(
            (i * 7 + 3) % 256 for i in range(256))

    write("c_api", "create-encode-destroy", create() + encode() + bytes([1, 0]))
    write("c_api", "nv12-padded", create() + encode(fmt=8, w=33, h=17, modes=(2, 2, 0), pads=(5, 3, 0))
          + bytes([7, 0, 1, 1]))
    write("c_api", "nulls", create(model_pick=0) + create(out=0) + create()
          + encode(nulls=0x80 | 0x40) + encode(nulls=0x40) + encode(fmt=10, nulls=0x02)
          + encode(enc=5) + encode(enc=6) + encode(enc=7) + bytes([1, 5, 1, 7, 1, 6]))
    write("c_api", "bad-descriptions", create() + encode(fmt=0) + encode(fmt=42 % 14 - 1)
          + encode(big=255) + encode(big=254) + encode(w=0) + encode(modes=(3, 0, 0), pads=(5, 0, 0))
          + encode(fmt=6, w=5, h=3, modes=(3, 0, 0), pads=(11, 0, 0)))
    prompt_ok = bytes([6, 0, 0, 1]) + b"".join(struct.pack("<f", (i % 5) - 2.0) for i in range(32))
    prompt_nan = bytes([6, 0, 0, 1]) + struct.pack("<f", float("nan")) * 32
    write("c_api", "options-prompts-info", create(mode=0) + create(mode=3) + create(mode=4)
          + create(mode=5) + create(mode=6) + create(budget=1, steps_sel=1) + prompt_ok + prompt_nan
          + bytes([6, 0, 1, 1]) + bytes([6, 0, 1, 0]) + bytes([8, 2, 8, 0, 8, 1, 8, 0x12])
          + bytes([9, 0, 2, 1, 9, 1, 3, 1, 9, 0, 0, 1, 9, 1, 4, 0]) + bytes([7, 0, 1, 1, 7, 0, 9, 0]))
    write("c_api", "load-log-status", create() + bytes([10, 0, 10, 1, 10, 2, 10, 3, 10, 4, 10, 5, 10, 0x42, 10, 0x83])
          + bytes([11, 3, 1, 11, 9, 1, 11, 0, 0]) + bytes([13]) + struct.pack("<i", -3)
          + bytes([12, 0, 12, 2]) + bytes([4, 0, 2, 1]) + bytes(range(12)) + bytes([4, 0, 0, 0]) + bytes([5, 0, 5, 0, 1]) + b"\xff\xd8\x00\x01\x02")


if __name__ == "__main__":
    manifest_seeds()
    package_seeds()
    frame_seeds()
    c_api_seeds()
    for t in sorted(os.listdir(CORPUS)):
        files = os.listdir(os.path.join(CORPUS, t))
        size = sum(os.path.getsize(os.path.join(CORPUS, t, f)) for f in files)
        print(f"{t}: {len(files)} files, {size} bytes")
