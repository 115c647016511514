"""What the benchmark scripts share: the real data they read, and running other code.

The scripts run as `python bench/NAME.py`, so this folder is on `sys.path`
and `import common` finds this module.
"""

import contextlib
import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]
HYMENOPTERA = REPO.parent / "shared" / "data" / "hymenoptera"


def add_data_argument(parser, default=HYMENOPTERA):
    """Adds `--data`: the hymenoptera folder (train/, val/)."""
    parser.add_argument("--data", default=str(default),
                        help="hymenoptera folder (train/, val/)")


def hymenoptera(data, splits=("train", "val")):
    """`data` as a path when it holds `splits`, else `None` after saying so on stderr."""
    data = pathlib.Path(data)
    if all((data / split).is_dir() for split in splits):
        return data
    print(f"No hymenoptera data at {data} (expected {' and '.join(f'{s}/' for s in splits)}).",
          file=sys.stderr)
    return None


@contextlib.contextmanager
def worktree(commit, path):
    """The code at `commit`, checked out at `path` for the block; yields its `src` folder.

    A worktree left at `path` by a killed run is replaced; the worktree is
    removed at the end.
    """
    git = ["git", "-C", str(REPO), "worktree"]
    path = pathlib.Path(path)
    if path.exists():
        subprocess.run([*git, "remove", "--force", str(path)], check=False)
    subprocess.run([*git, "add", "--force", "--detach", str(path), commit], check=True,
                   stdout=subprocess.DEVNULL)
    try:
        yield path / "src"
    finally:
        subprocess.run([*git, "remove", "--force", str(path)], check=False)


def python_on(src, *arguments):
    """Runs `sys.executable *arguments` on the code in `src`; returns its stdout.

    The same interpreter and packages, with `PYTHONPATH=src` so that
    `import transferkit` finds that code; a failure ends the script with its
    error output.
    """
    import os

    env = {**os.environ, "PYTHONPATH": str(src)}
    done = subprocess.run([sys.executable, *map(str, arguments)], check=False, env=env,
                          cwd=pathlib.Path(src).parent, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{' '.join(map(str, arguments))} failed:\n{done.stderr[-2000:]}")
    return done.stdout.strip()


def check_imports(sources):
    """Checks that each `{name: src}` code imports its own transferkit."""
    for name, src in sources.items():
        found = python_on(src, "-c", "import transferkit; print(transferkit.__file__)")
        if not found.startswith(str(src)):
            raise SystemExit(f"The {name} code imports {found}, not the one in {src}.")
