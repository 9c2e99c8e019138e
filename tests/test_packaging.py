"""The installed package: runtime requirements, and the console scripts of a non-editable install."""

import os
import pathlib
import re
import shutil
import subprocess
import sys
import zipfile

from conftest import REPO_ROOT


def _wheel(tmp_path: pathlib.Path) -> pathlib.Path:
    # Built from a copy: setuptools writes build/ and egg-info folders into the tree it builds.
    source = tmp_path / "source"
    for folder in ("tfrank", "bin"):
        shutil.copytree(REPO_ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__"))
    for file in ("setup.py", "README.md"):
        shutil.copy(REPO_ROOT / file, source / file)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path), str(source)], check=True, capture_output=True, timeout=300)
    (wheel,) = tmp_path.glob("tfrank-*.whl")
    return wheel


def test_wheel_ships_the_binaries_and_their_console_scripts(tmp_path):
    with zipfile.ZipFile(_wheel(tmp_path)) as wheel:
        names = set(wheel.namelist())
        entry_points = next(wheel.read(name).decode() for name in names if name.endswith("entry_points.txt"))
    assert {"tfrank_bin/train.py", "tfrank_bin/rank.py", "tfrank_bin/_quiet_tensorflow.py"} <= names
    assert "tfrank-train = tfrank_bin:train" in entry_points and "tfrank-rank = tfrank_bin:rank" in entry_points


def test_non_editable_install_runs_tfrank_train_like_bin_train(tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target),
                    str(_wheel(tmp_path))], check=True, capture_output=True, timeout=300)
    # The installed copy, not the repo: run from elsewhere with only the target folder in front.
    env = {**os.environ, "PYTHONPATH": str(target)}
    for script, function in (("train", "train"), ("rank", "rank")):
        installed = subprocess.run(
            [sys.executable, "-c", f"import sys, tfrank_bin; print(tfrank_bin.__file__, file=sys.stderr); "
             f"sys.argv = ['tfrank-{script}', '--help']; tfrank_bin.{function}()"],
            capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
        assert installed.returncode == 0, installed.stderr[-2000:]
        assert str(target) in installed.stderr
        from_repo = subprocess.run([sys.executable, str(REPO_ROOT / "bin" / f"{script}.py"), "--help"],
                                   capture_output=True, text=True, cwd=tmp_path, timeout=120)
        flags = set(re.findall(r"^  --(?:\[no\])?(\w+)", installed.stdout, flags=re.M))
        assert flags == set(re.findall(r"^  --(?:\[no\])?(\w+)", from_repo.stdout, flags=re.M))
        assert {"train": "loss", "rank": "user_id"}[script] in flags
