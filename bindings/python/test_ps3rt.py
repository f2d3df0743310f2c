"""Tests of the ctypes binding (bindings/python/ps3rt.py) against the real library.

    PS3RT_LIBRARY=path/to/libps3rt.so python -m unittest -v test_ps3rt    (in bindings/python)

With $PS3RT_CLI (the ps3rt binary) set, the features of the road fixture are also compared with
what `ps3rt run` writes for the same image and budget.
"""

import json
import os
import pathlib
import subprocess
import tempfile
import threading
import unittest

import numpy as np

import ps3rt

ROOT = pathlib.Path(__file__).resolve().parents[2]
ROAD = ROOT / "tests" / "fixtures" / "road-1280x720.png"
MODEL = ps3rt.Model(threads=2)


def pattern(h=180, w=320, seed=0):
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([(x * (7 + seed) + y * 3) % 256,
                     np.where(((x // 16 + y // 16) % 2) == 1, 230, 20),
                     (y * 5) % 256], axis=-1).astype(np.uint8)


class ModelTest(unittest.TestCase):
    def test_version_and_info(self):
        self.assertRegex(ps3rt.version(), r"^\d+\.\d+\.\d+$")
        self.assertEqual(MODEL.name, "ps3-tiny-4k")
        self.assertEqual(MODEL.origin, "embedded:ps3-tiny-4k")
        self.assertEqual(MODEL.backend, "tract")
        self.assertEqual((MODEL.width, MODEL.patch, MODEL.lowres_size), (32, 14, 378))
        self.assertEqual(MODEL.high_scales, (756, 1512, 3780))
        self.assertEqual((MODEL.input_size, MODEL.total_high_patches), (3780, 87480))

    def test_close_twice(self):
        # Destroying twice through the binding is harmless: close() forgets the handle before
        # destroying it, a second close() does nothing, and a closed model or encoder refuses further
        # use with an error instead of passing a freed handle to C (docs/reliability.md).
        model = ps3rt.Model(threads=1)
        encoder = ps3rt.Encoder(model, budget=8)
        model.close()
        model.close()
        # The encoder holds its own reference to the model.
        self.assertEqual(encoder.encode(pattern()).features.shape, (729 + 8, 32))
        encoder.close()
        encoder.close()
        with self.assertRaisesRegex(ValueError, "the encoder is closed"):
            encoder.encode(pattern())
        with self.assertRaisesRegex(ValueError, "the model is closed"):
            ps3rt.Encoder(model)

    def test_load_from_directory(self):
        with ps3rt.Model(ROOT / "models" / "ps3-tiny-4k", backend="tract", threads=1) as m:
            self.assertEqual(m.origin, str(ROOT / "models" / "ps3-tiny-4k"))
            self.assertEqual(m.name, "ps3-tiny-4k")

    def test_load_errors(self):
        with self.assertRaises(ps3rt.Error) as e:
            ps3rt.Model("/nonexistent/package")
        self.assertEqual(e.exception.status, ps3rt.Status.IO)
        self.assertIn("ps3rt_model_load: /nonexistent/package", e.exception.message)
        with self.assertRaises(ValueError):
            ps3rt.Model(backend="tpu")


class EncodeTest(unittest.TestCase):
    def setUp(self):
        self.encoder = ps3rt.Encoder(MODEL, budget=32)

    def tearDown(self):
        self.encoder.close()

    def test_result(self):
        img = pattern()
        r = self.encoder.encode(img)
        self.assertEqual(r.features.shape, (729 + 32, 32))
        self.assertEqual(r.features.dtype, np.float32)
        self.assertTrue(np.isfinite(r.features).all())
        self.assertEqual((r.lowres_token_count, r.budget, r.steps), (729, 32, 1))
        self.assertEqual(r.frame_size, (320, 180))
        self.assertEqual(r.tokens.shape, (761,))
        lowres = r.tokens[:729]
        self.assertTrue((lowres["scale"] == 378).all())
        np.testing.assert_array_equal(lowres["row"] * 27 + lowres["col"], np.arange(729))
        self.assertTrue(np.isin(r.tokens["scale"][729:], [756, 1512, 3780]).all())
        self.assertTrue((r.tokens["x"] >= 0).all() and (r.tokens["x"] + r.tokens["w"] <= 320.01).all())
        self.assertEqual(r.prob_map.shape, (27, 27))
        self.assertTrue(((r.prob_map > 0) & (r.prob_map < 1)).all())
        self.assertGreaterEqual(len(r.regions), 1)
        self.assertEqual(int(r.regions["patches"].sum()), 32)
        self.assertTrue((np.diff(r.regions["score"]) <= 0).all())
        self.assertGreater(r.timings["total_ms"], 0)
        # Results are copies: the next encode does not change them.
        before = r.features.copy()
        self.encoder.encode(pattern(seed=3))
        np.testing.assert_array_equal(r.features, before)

    def test_formats_and_strides_give_the_same_features(self):
        img = pattern()
        ref = self.encoder.encode(img).features
        bgr = np.ascontiguousarray(img[:, :, ::-1])
        np.testing.assert_array_equal(self.encoder.encode(bgr, format="bgr8").features, ref)
        rgba = np.dstack([img, np.full(img.shape[:2], 7, np.uint8)])
        np.testing.assert_array_equal(self.encoder.encode(rgba).features, ref)
        wide = np.zeros((180, 400, 3), np.uint8)
        wide[:, 40:360] = img
        crop = wide[:, 40:360]  # row stride 1200 bytes, not copied
        self.assertFalse(crop.flags["C_CONTIGUOUS"])
        np.testing.assert_array_equal(self.encoder.encode(crop).features, ref)
        gray = self.encoder.encode(img[:, :, 1])
        self.assertEqual(gray.features.shape, ref.shape)

    def test_preprocess_on_cpu_or_gpu(self):
        img = pattern()
        ref = self.encoder.encode(img).features
        self.encoder.set_preprocess(None)
        try:
            self.encoder.set_preprocess(0)
        except ps3rt.Error as e:
            # No GPU here: the error names what is missing and the encoder stays on the CPU.
            self.assertEqual(e.status, ps3rt.Status.BACKEND)
            self.assertIn("cuda", str(e))
        np.testing.assert_allclose(self.encoder.encode(img).features, ref, atol=1e-4)
        self.encoder.set_preprocess(None)
        np.testing.assert_array_equal(self.encoder.encode(img).features, ref)
        with self.assertRaises(ValueError):
            self.encoder.set_preprocess(-2)

    def test_frames_in_pinned_memory(self):
        img = pattern()
        ref = self.encoder.encode(img).features
        with self.assertRaises(ValueError):
            ps3rt.pinned_array((0, 3))
        try:
            pinned = ps3rt.pinned_array(img.shape)
        except ps3rt.Error as e:
            # No GPU here: the allocation names what is missing.
            self.assertIn(e.status, (ps3rt.Status.BACKEND, ps3rt.Status.UNSUPPORTED))
            self.assertIn("cuda", str(e))
            return
        self.assertEqual((pinned.shape, pinned.dtype), (img.shape, np.uint8))
        self.assertFalse(pinned.any())
        pinned[...] = img
        np.testing.assert_array_equal(self.encoder.encode(pinned).features, ref)
        self.encoder.set_preprocess(0)
        try:
            np.testing.assert_allclose(self.encoder.encode(pinned).features, ref, atol=1e-4)
        finally:
            self.encoder.set_preprocess(None)
        del pinned

    def test_yuv_planes_and_jpeg(self):
        # Full-range YUV with neutral chroma is gray: the same features as the luma as gray8.
        y = pattern()[:, :, 0].copy()
        h, w = y.shape
        ref = self.encoder.encode(y).features
        self.encoder.set_yuv_color("bt601", "full")
        try:
            uv = np.full(((h + 1) // 2, 2 * ((w + 1) // 2)), 128, np.uint8)
            nv12 = self.encoder.encode_yuv([y, uv], w, h, "nv12").features
            np.testing.assert_array_equal(nv12, ref)
            c = np.full(((h + 1) // 2, (w + 1) // 2), 128, np.uint8)
            np.testing.assert_array_equal(self.encoder.encode_yuv([y, c, c], w, h, "i420").features, ref)
            yuyv = np.full((h, 2 * w), 128, np.uint8)
            yuyv[:, 0::2] = y
            np.testing.assert_array_equal(self.encoder.encode_yuv(yuyv, w, h, ps3rt.PixelFormat.YUYV).features, ref)
            # Limited range changes the values.
            self.encoder.set_yuv_color(ps3rt.YuvMatrix.BT709, ps3rt.YuvRange.LIMITED)
            self.assertFalse(np.array_equal(self.encoder.encode_yuv([y, uv], w, h, "nv12").features, ref))
        finally:
            self.encoder.set_yuv_color()
        with self.assertRaises(ValueError):
            self.encoder.encode_yuv([y], w, h, "nv12")
        with self.assertRaises(ps3rt.Error) as e:
            self.encoder.encode_jpeg(b"\xff\xd8 not a jpeg")
        self.assertEqual(e.exception.status, ps3rt.Status.INVALID_FRAME)

    def test_bad_inputs(self):
        with self.assertRaises(TypeError):
            self.encoder.encode(pattern().astype(np.float32))
        with self.assertRaises(ValueError):
            self.encoder.encode(np.zeros((4, 4, 2), np.uint8))
        with self.assertRaises(ValueError):
            self.encoder.encode(pattern(), format="rgba8")
        with self.assertRaises(ps3rt.Error) as e:
            self.encoder.encode(np.zeros((0, 5, 3), np.uint8))
        self.assertEqual(e.exception.status, ps3rt.Status.INVALID_FRAME)
        self.assertIn("empty", e.exception.message)
        with self.assertRaises(ps3rt.Error) as e:
            ps3rt.Encoder(MODEL, budget=10**6)
        self.assertEqual(e.exception.status, ps3rt.Status.INVALID_ARGUMENT)
        self.assertIn("budget 1000000", e.exception.message)
        with self.assertRaises(ps3rt.Error) as e:
            self.encoder.set_prompt(np.ones(5, np.float32))
        self.assertIn("prompt has 5 values", e.exception.message)

    def test_prompt_changes_the_selection_map(self):
        img = pattern()
        bottom_up = self.encoder.encode(img).prob_map
        self.encoder.set_prompt(np.linspace(-1, 1, MODEL.width))
        top_down = self.encoder.encode(img).prob_map
        self.assertFalse(np.array_equal(bottom_up, top_down))
        self.encoder.set_prompt(None)
        np.testing.assert_array_equal(self.encoder.encode(img).prob_map, bottom_up)

    def test_labels_and_prompts(self):
        self.assertEqual(MODEL.max_regions, 16)
        self.assertTrue(MODEL.has_text_tower)
        self.assertEqual(len(MODEL.labels), 50)
        self.assertEqual(MODEL.labels[0], "stop sign")
        image = np.asarray(np.random.default_rng(3).integers(0, 255, (360, 640, 3)), np.uint8)
        self.encoder.encode(image)
        regions = self.encoder.label_regions(top_k=2)
        self.assertGreater(len(regions), 0)
        self.assertLessEqual(len(regions), 16)
        for r in regions:
            self.assertEqual(r["embedding"].shape, (MODEL.width,))
            self.assertEqual(len(r["labels"]), 2)
            label, score, logit = r["labels"][0]
            self.assertIn(label, MODEL.labels)
            self.assertAlmostEqual(score, 1 / (1 + np.exp(-logit)), places=5)
        whole = self.encoder.label_regions(boxes=[(0, 0, 640, 360)])
        self.assertEqual(whole[0]["scale"], 0)
        self.encoder.set_prompt_text("speed limit sign")
        self.encoder.set_prompt_label("stop sign")
        with self.assertRaises(ps3rt.Error) as e:
            self.encoder.set_prompt_label("no such sign")
        self.assertIn("not a label of the bank", e.exception.message)
        self.encoder.set_prompt(None)

    def test_tensor(self):
        s = MODEL.input_size
        rng = np.random.default_rng(1)
        t = rng.standard_normal((3, s, s), dtype=np.float32)
        with ps3rt.Encoder(MODEL, budget=16, steps=2) as enc:
            r = enc.encode_tensor(t)
            self.assertEqual(r.features.shape, (729 + 32, 32))
            self.assertEqual(r.frame_size, (s, s))
            with self.assertRaises(ValueError):
                enc.encode_tensor(t[:, :100, :100])
            t[1, 2, 3] = np.nan
            with self.assertRaises(ps3rt.Error) as e:
                enc.encode_tensor(t)
            self.assertIn("[1, 2, 3]", e.exception.message)

    def test_encoders_in_threads(self):
        imgs = [pattern(seed=k) for k in range(4)]
        refs = [self.encoder.encode(im).features for im in imgs]
        got = [None] * 4

        def work(k):
            with ps3rt.Encoder(MODEL, budget=32) as enc:
                got[k] = enc.encode(imgs[k]).features

        threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for k in range(4):
            np.testing.assert_array_equal(got[k], refs[k])

    def test_log_callback(self):
        seen = []
        ps3rt.set_log_callback(lambda level, msg: seen.append((level, msg)), ps3rt.LogLevel.INFO)
        try:
            ps3rt.Model(threads=1).close()
        finally:
            ps3rt.set_log_callback(None)
        self.assertTrue(any(lvl == ps3rt.LogLevel.INFO and "backend" in m for lvl, m in seen), seen)


@unittest.skipUnless(os.environ.get("PS3RT_CLI"), "set PS3RT_CLI to compare with `ps3rt run`")
class CliParityTest(unittest.TestCase):
    def test_features_match_the_cli(self):
        from PIL import Image

        rgb = np.asarray(Image.open(ROAD).convert("RGB"))
        with ps3rt.Encoder(MODEL, budget=256) as enc:
            r = enc.encode(rgb)
        with tempfile.TemporaryDirectory() as d:
            npy, js = os.path.join(d, "f.npy"), os.path.join(d, "r.json")
            subprocess.run([os.environ["PS3RT_CLI"], "run", "--input", str(ROAD), "--budget", "256",
                            "--features", npy, "--json", js], check=True, capture_output=True)
            cli = np.load(npy)
            with open(js) as f:
                meta = json.load(f)
        np.testing.assert_allclose(r.features, cli, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(r.prob_map.reshape(-1), np.asarray(meta["prob_map"]).reshape(-1),
                                   rtol=1e-6, atol=1e-7)
        self.assertEqual(len(r.regions), len(meta["regions"]))
        best = meta["regions"][0]
        self.assertEqual(int(r.regions[0]["scale"]), best["scale"])
        self.assertAlmostEqual(float(r.regions[0]["x"]), best["box"]["x"], places=3)


if __name__ == "__main__":
    unittest.main()
