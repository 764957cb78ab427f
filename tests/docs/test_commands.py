"""Every command the README and `docs/` show is run, as a reader would run it: each page's
`sh` blocks in order, in a folder of their own, servers left running for the page's later
blocks (a reader keeps them in another terminal), each command's output checked. What
differs from a reader's machine is said once, here: the free port a server got in place
of the page's 8000 or 8001, the value a page asks its reader to copy (a key, a request
id), the PostgreSQL database of the test. A command run by another test is named with
that test, which must hold it; any other block must be run here or the inventory fails.

`text` blocks are synopses (`[--flag VALUE]`): every option they name must exist in the
command's `--help`. Python blocks are run by the test that reads their section."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.docs.pages import ROOT, Block, blocks, commands, pages
from tests.receiver import eventually
from tests.servers import ServerProcess, launch
from tests.stack import ADMIN_KEY

# A server line, and the port the page's later lines reach it on unless it names one.
SERVERS = {"make run": 8000, "python -m proxy serve": 8000, "python -m fakeserver": 8001}
ASSIGNMENT = re.compile(r"^(?:export\s+)?([A-Z][A-Z0-9_]*)=(\S*)(\s+#.*)?$")
VARIABLE = re.compile(r"\$(\w+)|\$\{(\w+)\}")
# Commands another test runs: (the file that runs it, what that file must hold).
ELSEWHERE = {
    "make test": (".ci/run", "\nmake test"),
    "pip install": ("tests/contract/test_outside_team.py", '[testing]"'),
}
# Blocks another test reads from the page and runs whole: the test names the page and
# the heading it reads them by.
BLOCKS_ELSEWHERE = {
    ("docs/operations.md", "Several machines", "sh"): "tests/several_machines.py",
    ("docs/cassettes.md", "Test your code offline with our cassettes", "python"): (
        "tests/contract/outside.py"
    ),
    ("docs/testing.md", "Testing your own code offline: mock, server or cassettes", "python"): (
        "tests/contract/outside.py"
    ),
    ("README.md", "Five minutes", "python"): "tests/docs/test_commands.py",
}
# Examples that are code to read, not commands, by the page and the block's first line;
# each says which test makes the same calls.
ILLUSTRATIONS = {
    ("docs/gateway.md", "url = "): "the base URL and key to change; tests/e2e use them so",
    ("docs/cassettes.md", "from segmind import"): "tests/e2e/test_official_sdk_wait.py",
    ("docs/client.md", "from client import"): "tests/client/test_against_fake.py",
    ("docs/client.md", "from starlette."): "tests/client/test_webhooks.py",
    ("docs/fake.md", "import httpx"): "tests/fakeserver/ build the app in-process so",
    ("docs/architecture.md", "# workflows/__init__.py"): "tests/workflows_extra.py registers so",
}


@dataclass
class Reader:
    """One page's commands, run in order in `folder`, with what the page asked to copy."""

    folder: Path
    env: dict[str, str]
    values: dict[str, str] = field(default_factory=dict)  # placeholder -> value
    captures: dict[str, str] = field(default_factory=dict)  # placeholder -> regex
    ports: dict[int, int] = field(default_factory=dict)  # the page's port -> the real one
    seen: list[str] = field(default_factory=list)  # every output so far
    stack: ExitStack = field(default_factory=ExitStack)

    def substitute(self, command: str) -> str:
        for placeholder, pattern in self.captures.items():
            if placeholder in command and placeholder not in self.values:
                found = [m[1] for out in self.seen for m in re.finditer(pattern, out)]
                assert found, f"nothing before {command!r} printed {pattern}"
                self.values[placeholder] = found[-1]
        for placeholder, value in self.values.items():
            command = re.sub(rf"(?<![\w$]){re.escape(placeholder)}(?!\w)", value, command)
        for page_port, port in self.ports.items():
            command = re.sub(
                rf"\b(localhost|127\.0\.0\.1):{page_port}\b", f"127.0.0.1:{port}", command
            )
        return command

    def expand(self, word: str) -> str:
        def value(found: re.Match[str]) -> str:
            name = found[1] or found[2]
            assert name in self.env, f"the page uses ${name} before setting it"
            return self.env[name]

        return VARIABLE.sub(value, word)

    def learn(self, output: str) -> None:
        self.seen.append(output)
        try:
            answer = json.loads(output)
        except ValueError:
            return
        if isinstance(answer, dict):
            assert "error" not in answer, answer
            self.values.update({k.upper(): v for k, v in answer.items() if isinstance(v, str)})

    def run(self, command: str) -> None:
        if (assigned := ASSIGNMENT.match(command)) is not None:
            # The page's example value, unless the test has its own (a real database).
            self.env.setdefault(assigned[1], self.substitute(assigned[2]))
            return
        for prefix, (holder, proof) in ELSEWHERE.items():
            if command.startswith(prefix):
                assert proof in (ROOT / holder).read_text(), f"{holder} no longer runs {prefix}"
                return
        server = next((s for s in SERVERS if command.startswith(s)), None)
        if server is not None:
            self.serve(server, self.substitute(command))
            return
        done = subprocess.run(
            ["bash", "-o", "pipefail", "-c", self.substitute(command)],
            cwd=self.folder, env=self.env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
        self.learn(done.stdout)

    def serve(self, server: str, command: str) -> None:
        # As the reader's shell would: quotes removed, their variables expanded.
        words = [self.expand(word) for word in shlex.split(command, comments=True)]
        page_port = SERVERS[server]
        if "--port" in words:
            at = words.index("--port") + 1
            page_port, words[at] = int(words[at]), "0"
        env = dict(self.env)
        if server == "make run":  # the Makefile's own variables, as a reader would set them
            # Both clocks virtual: the test moves them; nothing waits for a run in real time.
            env.update(PORT="0", DB=str(self.folder / "gateway.sqlite"),
                       FAKE_FLAGS="--clock virtual", PROXY_CLOCK="virtual",
                       PROXY_ADMIN_KEY=ADMIN_KEY)  # fmt: skip
            argv, cwd = ["make", "--no-print-directory", *words[1:]], ROOT
        else:
            argv = [sys.executable, *words[1:]] + ([] if "--port" in words else ["--port", "0"])
            cwd = self.folder
        process: ServerProcess = launch(argv, env=env, cwd=cwd, name=server.replace(" ", "-"))
        self.stack.callback(process.stop)
        self.ports[page_port] = process.port
        self.seen.append(process.log.read_text())


def _python_bin(folder: Path) -> dict[str, str]:
    """The reader's shell: `python` and `.venv/bin/...` are this test's interpreter."""
    venv = Path(sys.executable).parent.parent
    (folder / ".venv").symlink_to(venv)
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    return {**os.environ, "PATH": path}


@contextmanager
def reader(tmp_path: Path, **values: str) -> Iterator[Reader]:
    folder = tmp_path / "reader"
    folder.mkdir()
    with ExitStack() as stack:
        person = Reader(folder, _python_bin(folder), stack=stack)
        person.values.update(values)
        yield person


def _page(name: str) -> list[Block]:
    return blocks(ROOT / name)


def _run_page(person: Reader, name: str) -> int:
    ran = 0
    for block in _page(name):
        if block.language == "sh" and (name, block.heading, "sh") not in BLOCKS_ELSEWHERE:
            for command in commands(block):
                person.run(command)
                ran += 1
    return ran


def test_the_readme(tmp_path: Path) -> None:
    with reader(tmp_path) as person:
        person.captures["sgw_..."] = r"api key:\s+(sgw_\S+)"
        assert _run_page(person, "README.md") >= 4
        assert person.values["STATUS"] == "QUEUED"
        port = person.ports[8000]
        # The run ends once both clocks move past it; the snippet's identical request is
        # then a HIT, COMPLETED at its first poll.
        (fake,) = [m[1] for out in person.seen for m in re.finditer(r"fake Segmind at (\S+)", out)]
        gateway = f"http://127.0.0.1:{port}"
        httpx.post(f"{fake}/__admin/clock/advance", json={"seconds": 1800}).raise_for_status()
        httpx.post(f"{gateway}/admin/clock/advance", json={"seconds": 1800},
                   headers={"x-admin-key": ADMIN_KEY}).raise_for_status()  # fmt: skip
        poll = f"{gateway}/workflows/request/{person.values['REQUEST_ID']}"
        team = {"x-api-key": person.values["sgw_..."]}
        eventually(lambda: httpx.get(poll, headers=team).json()["status"] == "COMPLETED",
                   what="the tour's run, once the clocks moved past it")  # fmt: skip
        (tour,) = [b for b in _page("README.md") if b.language == "python"]
        # The block sets its own key, as a reader pastes it: only the value is theirs.
        assert 'TEAM_KEY = "sgw_..."' in tour.text, tour.text
        source = tour.text.replace("127.0.0.1:8000", f"127.0.0.1:{port}").replace(
            '"sgw_..."', repr(person.values["sgw_..."])
        )
        done = subprocess.run(
            [sys.executable, "-c", source],
            capture_output=True, text=True, timeout=120, cwd=person.folder,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert "scene_1.mp4" in done.stdout


def test_the_gateway_page(tmp_path: Path) -> None:
    with reader(tmp_path) as person:
        person.captures["sgw_AbCdEfGh"] = r"keys (sgw_[\w-]{8})"
        assert _run_page(person, "docs/gateway.md") >= 8
        assert any("every key of the team" in out or "revoked" in out for out in person.seen)


def test_the_operations_page(tmp_path: Path, postgres_url: str) -> None:
    # This machine resolves no public name: the budget webhook is a loopback URL, allowed.
    hook = {"https://hooks.example.com/budget": "http://127.0.0.1:9/budget"}
    with reader(tmp_path, **hook) as person:
        person.env.update(DB=postgres_url, PROXY_WEBHOOK_ALLOW_NETWORKS='["127.0.0.0/8"]')
        person.captures["sgw_..."] = r'"api_key": "(sgw_[^"]+)"'
        assert _run_page(person, "docs/operations.md") >= 2
        assert any("team 'design' created" in out for out in person.seen)
        _one_machine_run_completes(person)


def _one_machine_run_completes(person: Reader) -> None:
    """The "On one machine, with the fake" section: the run the page submitted to one
    replica completes, read from the other, in real time (the fake's runs last about 7 s),
    with no setting the page does not show: the replicas learnt the fast upstream alone."""
    assert person.values["STATUS"] == "QUEUED"
    poll = f"http://127.0.0.1:{person.ports[8003]}/workflows/request/{person.values['REQUEST_ID']}"
    team = {"x-api-key": person.values["sgw_..."]}
    # Before replicas probed a new upstream, their first poll came 363 s in: this waited
    # for minutes and failed.
    eventually(lambda: httpx.get(poll, headers=team).json()["status"] == "COMPLETED",
               60, "the one-machine run, about 10 s after its submit")  # fmt: skip
    fake = f"http://127.0.0.1:{person.ports[8001]}"
    polls = httpx.get(f"{fake}/__admin/journal", params={"route": "poll"}).json()["entries"]
    assert 1 <= len(polls) <= 8, polls  # probing: 2, 4, 8, 16 s in, not a poll a second


def test_the_fake_page(tmp_path: Path) -> None:
    with reader(tmp_path) as person:
        assert _run_page(person, "docs/fake.md") >= 4
        assert "REQUEST_ID" in person.values


def test_the_cassettes_page(tmp_path: Path) -> None:
    with reader(tmp_path, **{"/path/to/this/repository": str(ROOT)}) as person:
        assert _run_page(person, "docs/cassettes.md") >= 4
        assert sorted(p.name for p in (person.folder / "tests" / "cassettes").iterdir()) == [
            "gateway_webhook.yaml",
            "success.yaml",
        ]
        assert any(" passed" in out for out in person.seen)  # schemathesis's summary


def test_the_testing_page(tmp_path: Path) -> None:
    with reader(tmp_path) as person:
        assert _run_page(person, "docs/testing.md") >= 1


RUN_HERE: Mapping[str, Callable[..., None]] = {
    "README.md": test_the_readme,
    "docs/gateway.md": test_the_gateway_page,
    "docs/operations.md": test_the_operations_page,
    "docs/fake.md": test_the_fake_page,
    "docs/cassettes.md": test_the_cassettes_page,
    "docs/testing.md": test_the_testing_page,
}


def _illustration(block: Block) -> bool:
    return any(block.page == page and block.text.startswith(start) for page, start in ILLUSTRATIONS)


def _unclaimed() -> list[str]:
    missing = []
    for page in pages():
        for block in blocks(page):
            claim = BLOCKS_ELSEWHERE.get((block.page, block.heading, block.language))
            if claim is not None:
                text = (ROOT / claim).read_text()
                if block.page not in text and Path(block.page).name not in text:
                    missing.append(f"{block}: {claim} no longer reads {block.page}")
            elif block.language == "sh" and block.page not in RUN_HERE:
                missing.append(f"{block}: no test runs this page's commands")
            elif block.language == "python" and not _illustration(block):
                missing.append(f"{block}: no test runs it; add it to one")
            elif block.language not in ("sh", "python", "text", "nginx", "json"):
                missing.append(f"{block}: say `sh` (run), `text` (synopsis) or `python`")
    return missing


def test_every_block_is_run_or_checked() -> None:
    assert _unclaimed() == []


def _subcommands(text: str) -> set[tuple[str, ...]]:
    """The subcommand paths a synopsis names: `python -m proxy admin usage ...` gives
    ("admin", "usage"); `status ID | wait ID` gives ("status",) and ("wait",)."""
    paths: set[tuple[str, ...]] = {()}
    for line in text.splitlines():
        if not line.startswith("python -m "):
            continue
        rest = line.split(maxsplit=3)[3:]  # what follows "python -m MODULE"
        for segment in rest[0].split("|") if rest else []:
            words = []
            for word in segment.split():
                if not re.fullmatch(r"[a-z][a-z-]*", word):
                    break
                words.append(word)
                paths.add(tuple(words))
    return paths


def _helps(program: list[str], paths: set[tuple[str, ...]]) -> str:
    """`--help` of the program and of each subcommand path the synopsis names."""
    texts = []
    for path in sorted(paths):
        done = subprocess.run([*program, *path, "--help"], capture_output=True, text=True)
        if done.returncode == 0:
            texts.append(done.stdout)
    return "\n".join(texts)


@pytest.mark.parametrize(
    "block",
    [
        b
        for p in pages()
        for b in blocks(p)
        if b.language == "text" and b.text.startswith("python -m")
    ],
    ids=str,
)
def test_every_option_of_a_synopsis_exists(block: Block) -> None:
    module = block.text.split()[2]
    helps = _helps([sys.executable, "-m", module], _subcommands(block.text))
    options = set(re.findall(r"--[a-z][\w-]*", block.text))
    assert options, "a synopsis with no option to check"
    assert options - set(re.findall(r"--[a-z][\w-]*", helps)) == set()


def test_a_missing_block_is_reported(tmp_path: Path) -> None:
    # The inventory itself: a page with an unclaimed command fails it.
    probe = ROOT / "docs" / "_probe_commands.md"
    probe.write_text("# Probe\n\n```sh\necho hi\n```\n\n```python\nprint(1)\n```\n")
    try:
        assert _unclaimed() == [
            "docs/_probe_commands.md:3 (sh, 'Probe'): no test runs this page's commands",
            "docs/_probe_commands.md:7 (python, 'Probe'): no test runs it; add it to one",
        ]
    finally:
        probe.unlink()
    assert shutil.which("bash")
