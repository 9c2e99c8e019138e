"""README.md's commands stay true: its Python example runs, its flags exist, CI runs its test command."""

import re
import subprocess
import sys

from conftest import REPO_ROOT

README = (REPO_ROOT / "README.md").read_text()


def _blocks(language):
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)


def test_python_example_runs_and_gives_finite_values():
    namespace = {}
    exec(compile(_blocks("python")[0], "README.md", "exec"), namespace)  # noqa: S102
    loss, ndcg = namespace["loss"], namespace["ndcg"]
    value = float(loss(namespace["labels"], namespace["scores"]))
    # One valid pair (1.0 over 0.0) scored the wrong way round: hinge = 1 - (0.2 - 0.9) = 1.7, divided by the
    # list's 3 positions as TF Ranking's default reduction does (TF Ranking 0.5.5 gives 0.56667 too).
    assert abs(value - 1.7 / 3) < 1e-6
    # The relevant movie is ranked 2nd of 2: DCG = 1 / log2(3), ideal DCG = 1 -> 0.63093.
    assert abs(float(ndcg(namespace["labels"], namespace["scores"])) - 0.6309298) < 1e-6


def test_shell_flags_exist_in_the_binaries():
    shell = "\n".join(_blocks("sh")).replace("\\\n", " ")
    for binary in ("train", "rank"):
        helpfull = subprocess.run([sys.executable, str(REPO_ROOT / "bin" / f"{binary}.py"), "--helpfull"],
                                  capture_output=True, text=True).stdout
        for line in shell.splitlines():
            if f"bin/{binary}.py" not in line:
                continue
            for flag in re.findall(r"--(\w+)=", line):
                assert f"--{flag}" in helpfull, f"README uses bin/{binary}.py --{flag}, which is not a flag"


def test_ci_runs_the_readme_install_and_test_commands():
    ci = (REPO_ROOT / ".ci" / "run").read_text()
    assert 'pip install -e ".[test]"' in README and 'pip install -e ".[test]"' in ci
    assert "python -m pytest -q tests" in README and "python -m pytest -q tests" in ci
