"""A wheel installed into a clean virtual environment works away from the checkout.

CI installs the project in editable mode, where the checkout's hw_specs/ and
rules/ are always at hand; a wheel must carry its own copies. These tests build
the wheel from a copy of the checkout, install it (without dependencies) into a
fresh venv, and run the README's main command and ``specs list`` from a folder
outside the repository, with nothing on PYTHONPATH.

The venv gets its dependencies through a .pth file naming this interpreter's
site-packages folders: a .pth line only adds a folder to sys.path, so the
.pth files inside it (among them an editable install of this checkout) are
not run, and the wheel's copy in the venv's own site-packages comes first.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from dataclasses import dataclass
from pathlib import Path

import onnx
import pytest

from rewriter.cli import main

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
TARGETS = ("CPU", "GPU", "VPU", "GNA", "ANY", "ORT")
# Build outputs and caches of the checkout stay out of the copy the wheel is built from.
_NOT_SOURCES = shutil.ignore_patterns(".git", ".venv", "build", "dist", "out", "*.egg-info", "__pycache__",
                                      ".bench-cache", ".pytest_cache", ".hypothesis", ".mypy_cache",
                                      ".ruff_cache")


@dataclass(frozen=True)
class Installed:
    """A venv holding the wheel, and a folder outside the checkout to run it from."""

    venv: Path
    workdir: Path
    env: dict[str, str]

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    def run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(a) for a in argv], cwd=self.workdir, env=self.env, capture_output=True,
                              text=True, timeout=120, check=False)

    def rewriter(self, *argv: str) -> subprocess.CompletedProcess[str]:
        return self.run(str(self.venv / "bin" / "rewriter"), *argv)


def _can_build_without_isolation() -> bool:
    """Whether this interpreter's setuptools builds wheels itself (>= 70.1 has bdist_wheel built in).

    Building with it needs no package index, so the test runs offline; otherwise
    pip's isolated build fetches setuptools from its configured index.
    """
    try:
        import setuptools
    except ImportError:
        return False
    major, minor = (int(part) for part in setuptools.__version__.split(".")[:2])
    return (major, minor) >= (70, 1)


def _build_wheel(source: Path, out: Path) -> Path:
    isolation = ["--no-build-isolation", "--no-index"] if _can_build_without_isolation() else []
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", *isolation, "-w", str(out),
                    str(source)], check=True, capture_output=True, text=True, timeout=300)
    (wheel,) = out.glob("rewriter-*.whl")
    return wheel


def _dependency_folders() -> list[str]:
    """This interpreter's site-packages folders, where the runtime dependencies are installed."""
    paths = sysconfig.get_paths()
    folders = {paths["purelib"], paths["platlib"]}
    folders.update(p for p in sys.path if p.endswith(("site-packages", "dist-packages")))
    return sorted(f for f in folders if Path(f).is_dir())


def _clean_env(venv_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "REWRITER_SPECS_DIR",
                        "PYTHONSAFEPATH")}
    env["PATH"] = f"{venv_dir / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(venv_dir)
    return env


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    base = tmp_path_factory.mktemp("wheel")
    source = base / "source"
    shutil.copytree(REPO, source, ignore=_NOT_SOURCES)
    wheel = _build_wheel(source, base / "dist")

    venv_dir = base / "venv"
    venv.create(venv_dir, with_pip=False, symlinks=True)
    site_packages = Path(subprocess.run(
        [str(venv_dir / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True).stdout.strip())
    (site_packages / "_rewriter_test_dependencies.pth").write_text("\n".join(_dependency_folders()) + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(venv_dir / "bin" / "python"), "install",
                    "--no-deps", "--no-index", "--quiet", str(wheel)],
                   check=True, capture_output=True, text=True, timeout=300)

    workdir = base / "elsewhere"
    workdir.mkdir()
    return Installed(venv_dir, workdir, _clean_env(venv_dir))


def test_the_venv_imports_the_wheel_not_the_checkout(installed: Installed) -> None:
    done = installed.run(installed.python, "-c", "import rewriter; print(rewriter.__file__)")
    assert done.returncode == 0, done.stderr
    module = Path(done.stdout.strip()).resolve()
    assert module.is_relative_to(installed.venv.resolve()), module
    assert not module.is_relative_to(REPO), module


def test_the_wheel_carries_every_module_spec_and_rule_file(installed: Installed) -> None:
    done = installed.run(installed.python, "-c", "import rewriter; print(rewriter.__file__)")
    package = Path(done.stdout.strip()).parent
    shipped = {p.relative_to(package).as_posix() for p in package.rglob("*") if p.is_file() and p.suffix != ".pyc"}
    expected = {p.relative_to(REPO).as_posix() for p in (REPO / "rewriter").rglob("*")
                if p.is_file() and p.suffix in (".py", ".lark")}
    expected = {path.removeprefix("rewriter/") for path in expected} | {"py.typed"}  # typed package (PEP 561)
    expected |= {f"report/assets/{p.name}" for p in (REPO / "rewriter" / "report" / "assets").iterdir()}
    expected |= {f"_targets/hw_specs/{p.name}" for p in (REPO / "hw_specs").glob("*.yaml")}
    expected |= {f"_targets/rules/{p.name}" for p in (REPO / "rules").glob("*.rules")}
    assert shipped == expected


def test_readme_quantize_runs_outside_the_checkout(installed: Installed) -> None:
    out = installed.workdir / "out" / "tiny_cnn.int8.onnx"
    report = installed.workdir / "out" / "report.json"
    page = installed.workdir / "out" / "report.html"
    done = installed.rewriter("quantize", EXAMPLES / "tiny_cnn.onnx", "-o", out, "--data", EXAMPLES / "calib",
                              "--target", "CPU", "--report", report, "--html", page)
    assert done.returncode == 0, done.stderr
    assert "dagre" in page.read_text()   # the page's assets are in the wheel
    onnx.checker.check_model(onnx.load(str(out)))
    doc = json.loads(report.read_text())
    # Locations are relative to the installed targets folder: the same text as in the checkout.
    assert (doc["target"], doc["spec"]) == ("CPU", "hw_specs/cpu.yaml")
    assert doc["rules"] == ["rules/cpu.rules", "rules/placement.rules", "rules/keep_float.rules",
                            "rules/activation_modes.rules", "rules/integer_kernels.rules"]
    assert doc["fakequantize"] and all(d["loc"].startswith(("rules/", "hw_specs/", "<"))
                                       for point in doc["fakequantize"] for d in point["trail"] if d["loc"])


def test_specs_list_shows_every_target(installed: Installed) -> None:
    done = installed.rewriter("specs", "list")
    assert done.returncode == 0, done.stderr
    listed = [line.split()[0] for line in done.stdout.splitlines()]
    assert sorted(listed) == sorted(TARGETS)


@pytest.mark.parametrize("target", ["ORT", "GNA"])
def test_installed_audit_prints_what_the_checkout_prints(installed: Installed, target: str,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    model = str(EXAMPLES / "tiny_cnn.onnx")
    done = installed.rewriter("audit", model, "--target", target, "--model-type", "transformer")
    assert done.returncode == 0, done.stderr
    assert main(["audit", model, "--target", target, "--model-type", "transformer"]) == 0
    assert done.stdout == capsys.readouterr().out
    assert f"rules {'rules/ort.rules' if target == 'ORT' else 'rules/gna.rules'}" in done.stdout


def test_the_version_is_the_one_pyproject_gives(installed: Installed) -> None:
    import re  # not tomllib: Python 3.10 is supported and has none

    found = re.search(r'^version = "([^"]+)"$', (REPO / "pyproject.toml").read_text(), re.MULTILINE)
    assert found is not None
    expected = found.group(1)
    for done in (installed.rewriter("--version"), installed.run(installed.python, "-m", "rewriter", "--version"),
                 installed.run(installed.python, "-c", "import rewriter; print('rewriter', rewriter.__version__)")):
        assert (done.returncode, done.stdout) == (0, f"rewriter {expected}\n"), done.stderr
