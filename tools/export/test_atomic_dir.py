#!/usr/bin/env python3
"""Tests of atomic_dir.py (standard library only; run by tests/atomic_writes.rs in `cargo test`).

    python3 tools/export/test_atomic_dir.py
"""

from __future__ import annotations

import os
import sys
import tempfile
import unittest
from unittest import mock

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import atomic_dir  # noqa: E402


def write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def read(path: str) -> str:
    with open(path) as f:
        return f.read()


def listing(path: str) -> dict[str, str]:
    return {name: read(os.path.join(path, name)) for name in sorted(os.listdir(path))}


class AtomicDirTest(unittest.TestCase):
    def setUp(self) -> None:
        self._tmp = tempfile.TemporaryDirectory()
        self.root = self._tmp.name
        self.dest = os.path.join(self.root, "pkg")

    def tearDown(self) -> None:
        self._tmp.cleanup()

    def siblings(self) -> list[str]:
        return sorted(os.listdir(self.root))

    def test_a_new_directory_appears_whole(self) -> None:
        stage = atomic_dir.staging_dir(self.dest, "export")
        self.assertEqual(os.path.dirname(stage), self.root)
        self.assertTrue(os.path.basename(stage).startswith(".pkg.export-"))
        write(os.path.join(stage, "manifest.json"), "{}")
        self.assertFalse(os.path.exists(self.dest))
        atomic_dir.install_dir(stage, self.dest)
        self.assertEqual(listing(self.dest), {"manifest.json": "{}"})
        self.assertEqual(self.siblings(), ["pkg"])

    def test_replacing_swaps_in_one_step_and_removes_the_old_one(self) -> None:
        os.mkdir(self.dest)
        write(os.path.join(self.dest, "old.bin"), "old")
        stage = atomic_dir.staging_dir(self.dest)
        write(os.path.join(stage, "new.bin"), "new")
        atomic_dir.install_dir(stage, self.dest)
        self.assertEqual(listing(self.dest), {"new.bin": "new"})
        self.assertEqual(self.siblings(), ["pkg"])

    def test_without_an_atomic_exchange_the_old_one_is_moved_aside_first(self) -> None:
        os.mkdir(self.dest)
        write(os.path.join(self.dest, "old.bin"), "old")
        stage = atomic_dir.staging_dir(self.dest)
        write(os.path.join(stage, "new.bin"), "new")
        with mock.patch.object(atomic_dir, "_exchange", return_value=False):
            atomic_dir.install_dir(stage, self.dest)
        self.assertEqual(listing(self.dest), {"new.bin": "new"})
        self.assertEqual(self.siblings(), ["pkg"])

    def test_a_failure_before_the_rename_leaves_the_old_package(self) -> None:
        os.mkdir(self.dest)
        write(os.path.join(self.dest, "manifest.json"), "old")
        stage = atomic_dir.staging_dir(self.dest)
        write(os.path.join(stage, "manifest.json"), "new")
        with mock.patch.object(atomic_dir, "fsync_tree", side_effect=OSError("disk full")):
            with self.assertRaises(OSError):
                atomic_dir.install_dir(stage, self.dest)
        self.assertEqual(listing(self.dest), {"manifest.json": "old"})

    def test_a_staged_copy_links_the_unchanged_files_and_leaves_the_original_alone(self) -> None:
        os.mkdir(self.dest)
        for name, text in [("weights.bin", "w"), ("labels.json", "old labels"), ("manifest.json", "old")]:
            write(os.path.join(self.dest, name), text)
        stage = atomic_dir.staged_copy(self.dest, skip={"labels.json", "manifest.json"})
        self.assertEqual(sorted(os.listdir(stage)), ["weights.bin"])
        self.assertTrue(os.path.samefile(os.path.join(stage, "weights.bin"), os.path.join(self.dest, "weights.bin")))
        write(os.path.join(stage, "labels.json"), "new labels")
        write(os.path.join(stage, "manifest.json"), "new")
        # Until the swap the package is the old one.
        self.assertEqual(read(os.path.join(self.dest, "labels.json")), "old labels")
        atomic_dir.install_dir(stage, self.dest)
        self.assertEqual(listing(self.dest), {"labels.json": "new labels", "manifest.json": "new", "weights.bin": "w"})
        self.assertEqual(self.siblings(), ["pkg"])

    def test_the_stage_must_be_a_sibling(self) -> None:
        elsewhere = tempfile.mkdtemp(dir=self.root)
        inner = os.path.join(elsewhere, "x")
        os.mkdir(inner)
        with self.assertRaises(ValueError):
            atomic_dir.install_dir(inner, self.dest)


if __name__ == "__main__":
    unittest.main()
