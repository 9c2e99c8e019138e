"""Every command that README.md and BUILD.md show is run or checked here, so that none can go stale.

Each command is found in the documents (shell blocks, ``$ `` lines, indented and inline commands) and handled by
what it runs:
- ``bin/train.py`` / ``tfrank-train``: run for real, with the documents' paths moved into a temporary folder and,
  unless it is the fresh-machine command, fewer lists and one epoch appended (absl takes the last value);
- ``bin/rank.py`` / ``tfrank-rank``, ``saved_model_cli``, ``tensorboard``: run for real on a run made here;
- ``bench/*.py``: every flag must be one the script's parser accepts (the benchmarks take minutes);
- installing, testing and linting: must be what ``.ci/run`` runs;
- the rest (TF Serving, the TF Ranking fixture venv, the C API test program) cannot run on this machine's
  packages alone; each is named below with the test or reason that covers it, and an unknown command fails.
"""

import math
import os
import re
import shlex
import signal
import subprocess
import sys

import pytest
from conftest import REPO_ROOT

from tfrank import distribute, losses

DOCUMENTS = ("README.md", "BUILD.md")
# Commands that run tools this machine's packages do not provide, with what covers them instead.
NOT_RUN_HERE = {
    "tensorflow_model_server": "TF Serving is not on PyPI; tests/test_export.py loads the export through the C API",
    "curl": "the REST request to TF Serving, as above",
    "serve_saved_model": "the C API program that tests/test_export.py compiles and runs",
    "/tmp/tfr215/bin/pip": "the TF Ranking 0.5.5 venv for fixtures; tests/test_losses_tfr.py checks its output",
    "/tmp/tfr215/bin/python": "the fixture generators, run in that venv",
    "python3 -m venv /tmp/tfr215": "the TF Ranking 0.5.5 venv",
}
CI = (REPO_ROOT / ".ci" / "run").read_text()
# Documented commands that must fail, with what their one-line error says.
FAILS_WITH = {"--learning_rate=1e30": "lower --learning_rate"}


def _commands(text: str) -> list[str]:
    """The shell commands of one Markdown document, continuation lines joined, comments dropped."""
    commands = []
    for language, block in re.findall(r"```(\w*)\n(.*?)```", text, flags=re.S):
        block = block.replace("\\\n", " ")
        if language == "sh" and "TF_CONFIG=" in block:
            commands.append(block.strip())  # a cluster: one script, its processes run together
            continue
        for line in block.splitlines():
            if language == "sh" or line.startswith("$ "):
                commands.append(line.removeprefix("$ "))
            elif language == "" and re.match(r"(tensorflow_model_server|curl) ", line):
                commands.append(line)
    prose = re.sub(r"```.*?```", "", text, flags=re.S)  # indented and inline commands stand outside the blocks
    commands += [line.strip() for line in re.findall(r"^    (python .*)$", prose, flags=re.M)]
    commands += re.findall(r"`((?:python|tfrank-train|tfrank-rank|tensorboard|pip) [^`]*)`", prose)
    split = [command for command in commands if "TF_CONFIG=" in command]
    for command in commands:
        if "TF_CONFIG=" not in command:
            command = re.sub(r"\s+#.*$", "", command).strip()
            split += [re.sub(r"\s+", " ", part.strip()) for part in command.split("&&") if part.strip()]
    return split


ALL_COMMANDS = sorted({command for name in DOCUMENTS for command in _commands((REPO_ROOT / name).read_text())})


def _kind(command: str) -> str:
    words = command.split()
    if any(command.startswith(prefix) for prefix in NOT_RUN_HERE):
        return "not run here"
    if "TF_CONFIG=" in command:
        return "cluster"
    if re.search(r"(bin/train\.py|^tfrank-train)\b", command):
        return "train"
    if re.search(r"(bin/rank\.py|^tfrank-rank)\b", command):
        return "rank"
    if "bench/" in command:
        return "bench"
    if words[0] in ("saved_model_cli", "tensorboard"):
        return words[0]
    if re.match(r"(python3 -m venv|\. \.venv/bin/activate|pip install|ruff check|(TFRANK_\S+ )?python -m pytest)",
                command):
        return "ci"
    return "unknown"


def test_readme_python_example_gives_tf_rankings_values():
    (example, *_) = re.findall(r"```python\n(.*?)```", (REPO_ROOT / "README.md").read_text(), flags=re.S)
    namespace = {}
    exec(compile(example, "README.md", "exec"), namespace)  # noqa: S102
    labels, scores = namespace["labels"], namespace["scores"]
    # One valid pair (1.0 over 0.0) scored the wrong way round: hinge = 1 - (0.2 - 0.9) = 1.7, divided by the
    # list's 3 positions as TF Ranking's default reduction does (TF Ranking 0.5.5 gives 0.56667 too).
    assert abs(float(namespace["loss"](labels, scores)) - 1.7 / 3) < 1e-6
    # The relevant movie is ranked 2nd of 2: DCG = 1 / log2(3), ideal DCG = 1 -> 0.63093.
    assert abs(float(namespace["ndcg"](labels, scores)) - 0.6309298) < 1e-6


def test_readme_tf_ranking_example_runs_with_tfrank_as_tfr():
    (_, example, *_) = re.findall(r"```python\n(.*?)```", (REPO_ROOT / "README.md").read_text(), flags=re.S)
    assert "import tfrank as tfr" in example
    namespace = {}
    exec(compile(example, "README.md", "exec"), namespace)  # noqa: S102
    labels, scores = namespace["labels"], namespace["scores"]
    assert isinstance(namespace["loss"], losses.SoftmaxLoss)
    assert isinstance(namespace["hinge"], losses.PairwiseHingeLoss)
    # Softmax cross-entropy of the one relevant item: -log(e^0.2 / (e^0.2 + e^0.9)) = log(1 + e^0.7).
    assert abs(float(namespace["loss"](labels, scores)) - math.log1p(math.exp(0.7))) < 1e-6
    assert abs(float(namespace["hinge"](labels, scores)) - 1.7 / 3) < 1e-6
    assert abs(float(namespace["ndcg"](labels, scores)) - 0.6309298) < 1e-6
    assert [metric.name for metric in namespace["metrics"]][:3] == ["metric/ndcg_1", "metric/ndcg_3", "metric/ndcg_5"]


def test_every_command_in_the_documents_is_covered():
    assert len(ALL_COMMANDS) > 10
    unknown = [command for command in ALL_COMMANDS if _kind(command) == "unknown"]
    assert not unknown, f"commands in README.md/BUILD.md that no test runs or checks: {unknown}"


@pytest.mark.parametrize("command", [c for c in ALL_COMMANDS if _kind(c) == "ci"])
def test_install_test_and_lint_commands_are_what_ci_runs(command):
    if command.startswith(("python3 -m venv", ". .venv")):
        assert command in CI
        return
    command = re.sub(r"^TFRANK_MOVIELENS_DIR=\S+ ", "", command)
    if command == "pip install .":  # a non-editable install: tests/test_packaging.py installs the wheel
        assert "def test_non_editable_install_runs" in (REPO_ROOT / "tests" / "test_packaging.py").read_text()
        return
    if command.startswith("pip install -e"):
        extras = re.search(r'"\.\[([\w,]+)\]"', command).group(1).split(",")
        assert "test" in extras or "tensorboard" in extras or "bench" in extras
        if extras == ["test"]:
            assert command in CI
        return
    assert command in CI


@pytest.mark.parametrize("command", [c for c in ALL_COMMANDS if _kind(c) == "bench"])
def test_benchmark_commands_use_flags_their_scripts_define(command):
    script = re.search(r"bench/\w+\.py", command).group(0)
    source = (REPO_ROOT / script).read_text()
    defined = set(re.findall(r"add_argument\(\s*\"--(\w+)\"", source))
    for flag in re.findall(r"--(\w+)", command):
        assert flag in defined, f"{command}: {script} has no --{flag}"


def _env():
    env = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    return env


def _localise(command: str, root, movielens_dir) -> list[str]:
    """The command's words with the documents' paths moved to ``root`` and the MovieLens folder of the tests."""
    command = command.replace("../shared/data/ml-100k", str(movielens_dir))
    # TF Ranking's example files (Apache 2.0) sit beside the repo as MovieLens does; CI's clone has them there too.
    command = command.replace("../shared/data/tf-ranking-examples", str(REPO_ROOT.parent / "shared" / "data" /
                                                                         "tf-ranking-examples"))
    command = re.sub(r"/tmp/tfrank_export\b", str(root / "export" / "pairwise_hinge"), command)
    command = re.sub(r"/tmp/tfrank\b", str(root), command)
    words = shlex.split(command)
    if words[0] in ("python", "python3"):
        words[0] = sys.executable
    for index, word in enumerate(words):
        if word.startswith(("bin/", "bench/")):
            words[index] = str(REPO_ROOT / word)
    return words


@pytest.fixture(scope="module")
def documented_run(movielens_dir, tmp_path_factory):
    """README's MovieLens training command, run as shown (paths moved into a temporary folder)."""
    root = tmp_path_factory.mktemp("docs")
    (train,) = [c for c in ALL_COMMANDS if _kind(c) == "train" and "--model_dir=/tmp/tfrank/model" in c]
    process = subprocess.run(_localise(train, root, movielens_dir), capture_output=True, text=True, env=_env(),
                             cwd=root, timeout=600)
    assert process.returncode == 0, process.stderr[-3000:]
    return root


@pytest.mark.parametrize("command", [c for c in ALL_COMMANDS if _kind(c) == "train"])
def test_training_commands_run(command, documented_run, movielens_dir, tmp_path):
    words = _localise(command, tmp_path, movielens_dir)
    if "--dataset=synthetic" not in command and "--model_dir=/tmp/tfrank/model" not in command:
        words += ["--num_lists_per_user=2", "--epochs=1"]  # the same code path, in seconds
    if "--model_dir=/tmp/tfrank/model" in command:
        return  # documented_run ran it as shown
    env = _env()
    if "--dataset=synthetic" in command:
        env.pop("TFRANK_MOVIELENS_DIR", None)  # the fresh-machine command needs no data
    process = subprocess.run(words, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    failure = next((message for flag, message in FAILS_WITH.items() if flag in command), None)
    if failure:
        assert process.returncode == 1 and failure in process.stderr and process.stderr.count("\n") == 1
        return
    assert process.returncode == 0, process.stderr[-3000:]
    assert re.search(r"^\S+\s+test\s+0\.\d{4}", process.stdout, flags=re.M), process.stdout[-2000:]


@pytest.mark.parametrize("command", [c for c in ALL_COMMANDS if _kind(c) == "rank"])
def test_ranking_commands_run_on_the_documented_export(command, documented_run, movielens_dir):
    process = subprocess.run(_localise(command, documented_run, movielens_dir), capture_output=True, text=True,
                             env=_env(), cwd=documented_run, timeout=300)
    assert process.returncode == 0, process.stderr[-3000:]
    assert re.search(r"^\s+1\s+-?\d+\.\d+\s+\d+", process.stdout, flags=re.M), process.stdout


@pytest.mark.parametrize("command", [c for c in ALL_COMMANDS if _kind(c) == "saved_model_cli"])
def test_saved_model_cli_commands_run_on_the_documented_export(command, documented_run, movielens_dir):
    words = _localise(command, documented_run, movielens_dir)
    process = subprocess.run(words, capture_output=True, text=True, env=_env(), timeout=300)
    assert process.returncode == 0, process.stderr[-3000:]
    assert "scores" in process.stdout


@pytest.mark.parametrize("command", [c for c in ALL_COMMANDS if _kind(c) == "tensorboard"])
def test_tensorboard_command_finds_the_runs_curves(command, documented_run, movielens_dir):
    # --inspect prints what the server would show, then exits.
    words = _localise(command, documented_run, movielens_dir) + ["--inspect"]
    process = subprocess.run(words, capture_output=True, text=True, env=_env(), timeout=300)
    assert process.returncode == 0, process.stderr[-3000:]
    assert "val/ndcg@5" in process.stdout and "train/loss" in process.stdout


@pytest.mark.parametrize("script", [c for c in ALL_COMMANDS if _kind(c) == "cluster"])
def test_cluster_scripts_train_with_every_worker(script, tmp_path):
    # The documents' ports may be taken here: free ones instead, and one epoch, the same code path.
    documented = sorted(set(re.findall(r"127\.0\.0\.1:(\d+)", script)))
    for port, free in zip(documented, distribute.free_local_ports(len(documented))):
        script = script.replace(f"127.0.0.1:{port}", f"127.0.0.1:{free}")
    script = script.replace("/tmp/tfrank", str(tmp_path)).replace("python bin/", f"{sys.executable} {REPO_ROOT}/bin/")
    script = re.sub(r"(bin/train\.py[^\n&]*)", r"\1 --epochs=1 ", script)
    env = _env()
    env.pop("TFRANK_MOVIELENS_DIR", None)
    process = subprocess.Popen(["bash", "-c", "set -e\n" + script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=env, cwd=tmp_path, start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == 0, stderr[-3000:]
    (results,) = tmp_path.glob("*/results.json")  # the chief's, and only one
    assert re.search(r"^\S+\s+test\s+0\.\d{4}", stdout, flags=re.M), stdout[-2000:]
    assert results.is_file()
