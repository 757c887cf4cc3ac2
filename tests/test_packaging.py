"""The built wheel carries what the package needs at run time: the recipes and the split lists."""
from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tinyasc import config as cfgmod
from tinyasc.base.errors import TinyAscError

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel_files(tmp_path_factory) -> set[str]:
    out = tmp_path_factory.mktemp("wheel")
    try:
        import setuptools  # noqa: F401
    except ImportError:
        pytest.skip("setuptools is not installed in this environment")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                    str(REPO)], check=True, capture_output=True, cwd=out)
    (wheel,) = out.glob("tinyasc-*.whl")
    return set(zipfile.ZipFile(wheel).namelist())


def test_wheel_carries_every_recipe_and_split_list(wheel_files):
    recipes = {f"tinyasc/configs/{p.name}" for p in cfgmod.RECIPES.glob("*.yaml")}
    assert len(recipes) >= 11 and recipes <= wheel_files
    splits = {f"tinyasc/data/splits/{p.name}" for p in (REPO / "tinyasc" / "data" / "splits").glob("*.csv.gz")}
    assert splits and splits <= wheel_files
    assert "tinyasc/cli/__init__.py" in wheel_files and not any(n.startswith("tests/") for n in wheel_files)


def test_recipe_by_name_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = cfgmod.resolve("001_moflenet57")
    assert config["model"]["name"] == "moflenet57"
    assert cfgmod.find_recipe("configs/001_moflenet57.yaml") == cfgmod.RECIPES / "001_moflenet57.yaml"
    with pytest.raises(TinyAscError, match="no such config file or packaged recipe; recipes: 000_ghost"):
        cfgmod.resolve("no_such_recipe")
