"""Each distribution as a user installs it: build its wheel, install it alone into a fresh venv (its own
requirements only, at the versions of ``constraints.txt``; a sibling it depends on from the wheels built here),
smoke-test it there (``distribution_smoke.py``) and measure the install's time and size.

    python benchmarks/distributions.py --out runs/distributions --compile   # as users install (the table)
    python benchmarks/distributions.py --out DIR --jobs 2                    # CI: no .pyc, two at once
    python benchmarks/distributions.py --out DIR --constraints lower.txt     # other versions of the ranges

Prints a markdown table (BENCHMARKS.md, "Distributions") and writes ``results.json``; exits 1 naming the first
failed check. A wheel must hold only its own import packages, each with ``py.typed``; the vectors the smoke test
got through the numpy adaptor must equal the torch adaptor's on the same base vectors. Run by
``tests/test_distributions.py`` (so by ``make test``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from matryoshka_rag import AdaptorConfig, MatryoshkaAdaptor, load_adaptor, save_adaptor

REPO = Path(__file__).resolve().parents[1]
CONSTRAINTS = REPO / "constraints.txt"
SMOKE = Path(__file__).with_name("distribution_smoke.py")
CORE_SOURCES = ("pyproject.toml", "README.md", "matryoshka_rag")


@dataclass(frozen=True)
class Distribution:
    name: str
    project: str  # folder of its pyproject.toml, relative to the repository
    package: str  # the import package folder its wheel holds


DISTRIBUTIONS = (
    Distribution("matryoshka-rag", ".", "matryoshka_rag"),
    Distribution("langchain-matryoshka-rag", "integrations/langchain", "langchain_matryoshka_rag"),
    Distribution(
        "llama-index-embeddings-matryoshka-rag",
        "integrations/llama_index/llama-index-embeddings-matryoshka-rag",
        "llama_index/embeddings/matryoshka_rag",
    ),
    Distribution(
        "llama-index-vector-stores-matryoshka-rag",
        "integrations/llama_index/llama-index-vector-stores-matryoshka-rag",
        "llama_index/vector_stores/matryoshka_rag",
    ),
)


@dataclass
class Installed:
    name: str
    install_seconds: float
    site_packages_mib: float
    distributions: int  # installed distributions in the venv, this one included
    absent: list[str]  # modules the smoke test found not importable


def build_wheel(distribution: Distribution, wheels: Path, scratch: Path) -> Path:
    """``pip wheel --no-deps --no-build-isolation`` (offline) -> the wheel's path. The core is built from a copy
    of its sources, so setuptools' ``build/`` never lands in (or is reused from) the working tree."""
    project = REPO / distribution.project
    if distribution.project == ".":
        project = scratch / "core-source"
        for name in CORE_SOURCES:
            source = REPO / name
            if source.is_dir():
                shutil.copytree(source, project / name, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                project.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, project / name)
    before = set(wheels.glob("*.whl"))
    pip = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(wheels)]
    subprocess.run([*pip, str(project)], check=True, capture_output=True, text=True)
    (wheel,) = set(wheels.glob("*.whl")) - before
    return wheel


def check_wheel(distribution: Distribution, wheel: Path) -> None:
    """The wheel holds its package (with ``py.typed``) and its ``.dist-info``, nothing else."""
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    own = f"{distribution.package}/"
    stray = [
        n
        for n in names
        if not (n.startswith(own) or n.split("/")[0].endswith(".dist-info")) or "__pycache__" in n
    ]
    if stray:
        raise AssertionError(f"{wheel.name} holds files outside {own}: {stray[:5]}")
    if f"{own}py.typed" not in names:
        raise AssertionError(f"{wheel.name} has no {own}py.typed")


def make_adaptor(folder: Path) -> Path:
    """A tiny adaptor folder (base dim 16, dims 4, 8, 16, a rotation, random weights) saved with torch."""
    generator = torch.Generator().manual_seed(0)
    rotation, _ = torch.linalg.qr(torch.randn(16, 16, generator=generator))
    adaptor = MatryoshkaAdaptor(
        AdaptorConfig(base_dim=16, dims=(4, 8, 16), base_model="hash-vectors", rotation=True),
        rotation=rotation,
    )
    with torch.no_grad():
        for parameter in adaptor.mlp.parameters():
            parameter.copy_(0.3 * torch.randn(parameter.shape, generator=generator))
    return save_adaptor(adaptor, folder)


def site_packages(venv: Path) -> Path:
    (folder,) = venv.glob("lib/python*/site-packages")
    return folder


def folder_mib(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink()) / 2**20


def install_and_smoke(
    distribution: Distribution,
    wheel: Path,
    wheels: Path,
    adaptor: Path,
    out: Path,
    compile: bool,
    constraints: Path,
) -> Installed:
    """A fresh venv (no pip: the caller's pip installs into it) holding ``wheel`` and its requirements, the smoke
    test run in it, its adapted vectors compared with the torch adaptor's. ``compile``: pip's default of
    writing ``.pyc`` files (about half the install time), else ``--no-compile``."""
    venv = out / "venvs" / distribution.name
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    pip = [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "-c", str(constraints)]
    pip += [] if compile else ["--no-compile"]
    start = time.perf_counter()
    run = subprocess.run([*pip, "--find-links", str(wheels), str(wheel)], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if run.returncode:
        errors = "\n".join(line for line in run.stderr.splitlines() if not line.startswith("WARNING:"))
        raise AssertionError(f"installing {wheel.name} failed: {errors[-2000:]}")
    result_path = out / f"{distribution.name}.json"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    run = subprocess.run(
        [str(python), str(out / SMOKE.name), distribution.name, str(adaptor), str(result_path)],
        cwd=out,
        env={**env, "PYTHONNOUSERSITE": "1"},
        capture_output=True,
        text=True,
    )
    if run.returncode:
        raise AssertionError(f"{distribution.name}'s smoke test failed: {run.stderr[-3000:]}")
    result = json.loads(result_path.read_text())
    if "adapted" in result:
        expected = load_adaptor(adaptor).transform(np.asarray(result["base"], np.float32), result["dim"])
        np.testing.assert_allclose(result["adapted"], expected, atol=1e-5, err_msg=distribution.name)
    folder = site_packages(venv)
    return Installed(
        distribution.name,
        round(seconds, 1),
        round(folder_mib(folder), 1),
        len(list(folder.glob("*.dist-info"))),
        result["absent"],
    )


def check_all(
    out: Path,
    compile: bool = False,
    jobs: int = 1,
    constraints: Path = CONSTRAINTS,
    only: tuple[str, ...] = (),
) -> list[Installed]:
    """Build and check every wheel, install and smoke-test every distribution (those named in ``only`` when
    given; ``jobs`` at once); AssertionError on the first failure."""
    wheels, scratch = out / "wheels", out / "scratch"
    for folder in (wheels, scratch):
        folder.mkdir(parents=True)
    shutil.copy2(SMOKE, out / SMOKE.name)
    adaptor = make_adaptor(out / "adaptor")
    built = {}
    for distribution in DISTRIBUTIONS:
        built[distribution.name] = build_wheel(distribution, wheels, scratch)
        check_wheel(distribution, built[distribution.name])
    with ThreadPoolExecutor(jobs) as pool:
        runs = [
            pool.submit(install_and_smoke, d, built[d.name], wheels, adaptor, out, compile, constraints)
            for d in DISTRIBUTIONS
            if not only or d.name in only
        ]
        return [run.result() for run in runs]


def markdown(rows: list[Installed]) -> str:
    lines = [
        "| distribution | install (s) | site-packages (MiB) | distributions installed | not importable |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| `{row.name}` | {row.install_seconds:.0f} | {row.site_packages_mib:.0f} | {row.distributions} | "
            + ", ".join(f"`{m}`" for m in row.absent)
            + " |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out", type=Path, required=True, help="an empty or absent folder for wheels and venvs"
    )
    parser.add_argument("--compile", action="store_true", help="write .pyc files, as pip does by default")
    parser.add_argument("--jobs", type=int, default=1, help="distributions installed at once")
    parser.add_argument("--constraints", type=Path, default=CONSTRAINTS, help="pip constraints (versions)")
    names = [d.name for d in DISTRIBUTIONS]
    parser.add_argument("--only", nargs="+", choices=names, default=(), help="install and test only these")
    args = parser.parse_args(argv)
    if args.out.exists() and any(args.out.iterdir()):
        parser.error(f"--out {args.out} is not empty")
    try:
        rows = check_all(args.out, args.compile, args.jobs, args.constraints.resolve(), tuple(args.only))
    except (AssertionError, subprocess.CalledProcessError) as error:
        detail = getattr(error, "stderr", None) or ""
        print(f"distributions: {error} {detail}".strip(), file=sys.stderr)
        return 1
    (args.out / "results.json").write_text(json.dumps([asdict(row) for row in rows], indent=2) + "\n")
    print(markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
