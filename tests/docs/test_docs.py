"""Keep the user documentation in docs/ honest: it must match the code and really run.

Conventions the documentation follows (and these tests rely on):

- docs/configuration.md names every `[tool.lambda-bundle]` key (`spec.CONFIG_KEYS`) as `key` and
  every option of the command as `--option` (short forms as `-o`), in backticks.
- docs/troubleshooting.md quotes error messages on lines starting with `> Message:`, followed by
  one or more backticked fragments (double backticks when the fragment holds a backtick). Each
  fragment must occur verbatim, whitespace normalised, in a string literal of
  poetry_plugin_lambda/ (for f-strings: in one literal part, between the `{…}` fields).
- In docs/*.md, every ```console block is a real session: each line starting with
  `$ poetry lambda-bundle` is run with `python -m poetry` in a copy of docs/example/service (an
  isolated Poetry cache, no network), in order, in one copy per block, and must exit 0. An HTML
  comment right before the fence changes that: `<!-- docs-check: skip -->` skips the block (for
  sessions from another project or needing the network), `<!-- docs-check: exit=N -->` expects
  exit code N. The lines shown under a command must be exactly what it prints (stdout then
  stderr; stderr first with --format json, where progress goes there), with the example's path
  written as /home/dev/poetry-plugin-lambda/docs/example/service. Not compared: --compile
  sessions (bytecode depends on the interpreter), and piped commands except a
  `| jq -r .field`, whose result must be the report's field. Commands that need a CPython of the
  runtime's version (--compile, --compile-with) are skipped when there is none.
  Other fences (```sh, ```text, …) are snippets to adapt and are not run.
- README.md links every page of docs/, and the pages' relative links resolve.
"""

from __future__ import annotations

import ast
import difflib
import json
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path

import pytest

from poetry_plugin_lambda.command import LambdaBundleCommand
from poetry_plugin_lambda.spec import CONFIG_KEYS
from poetry_plugin_lambda.targets import RUNTIMES
from tests.fixtures.projects import poetry_env

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
SOURCE = ROOT / "poetry_plugin_lambda"
EXAMPLE = DOCS / "example"
PAGES = sorted(DOCS.glob("*.md"))
# Pages other people write: linked already, checked once they exist.
PENDING: set[str] = set()

COMMAND_PREFIX = "$ poetry lambda-bundle"
MARKER = re.compile(r"^<!--\s*docs-check:\s*(skip|exit=(\d+))\s*-->$")
CODE_SPAN = re.compile(r"(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)")
SHELL_OPERATORS = {"|", "||", "&&", ";", "&", ">", ">>", "<", "2>", "2>&1"}
# Where the sessions shown in the docs were run: replaced by the test's copy when comparing.
DOCS_PROJECT = "/home/dev/poetry-plugin-lambda/docs/example/service"


def _text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def _normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _code_spans(line: str) -> list[str]:
    spans = []
    for match in CODE_SPAN.finditer(line):
        content = match.group(2)
        if content.startswith(" ") and content.endswith(" ") and content.strip():
            content = content[1:-1]
        spans.append(content)
    return spans


# -- 1. configuration.md documents every key and option --------------------------------------------


def _option_names() -> list[str]:
    names = []
    for opt in LambdaBundleCommand.options:
        names.append(f"--{opt.name}")
        if opt.shortcut:
            names.extend(f"-{short}" for short in opt.shortcut.split("|"))
    return names


def test_configuration_documents_every_key_and_option() -> None:
    page = _text(DOCS / "configuration.md")
    spans = set()
    for line in page.splitlines():
        spans.update(_code_spans(line))
    missing_keys = [key for key in CONFIG_KEYS if key not in spans]
    missing_options = [name for name in _option_names() if name not in spans]
    assert not missing_keys, f"config keys not documented as `key` in configuration.md: {missing_keys}"
    assert not missing_options, f"options not documented as `--option` in configuration.md: {missing_options}"


def test_every_runtime_is_in_the_runtime_table() -> None:
    rows = [line for line in _text(DOCS / "getting-started.md").splitlines() if line.startswith("|")]
    for runtime in RUNTIMES.values():
        row = next((r for r in rows if f"| `{runtime.name}` |" in r), None)
        assert row is not None, f"{runtime.name} is missing from the runtime table of getting-started.md"
        glibc = f"{runtime.glibc[0]}.{runtime.glibc[1]}"
        assert glibc in row and runtime.os in row, f"{runtime.name}: expected glibc {glibc} and {runtime.os} in {row!r}"


def test_design_maps_every_module() -> None:
    page = _text(DOCS / "design.md")
    modules = sorted(p.name for p in SOURCE.glob("*.py"))
    missing = [name for name in modules if f"`{name}`" not in page]
    assert not missing, f"modules missing from the module map of design.md: {missing}"


# -- 2. troubleshooting.md quotes messages the code really prints ------------------------------------


def _string_literals() -> list[str]:
    """Every string literal of the package; f-strings as their literal parts joined by NUL."""
    pieces = []
    for path in sorted(SOURCE.glob("*.py")):
        tree = ast.parse(_text(path), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                pieces.append(node.value)
            elif isinstance(node, ast.JoinedStr):
                parts = [
                    v.value if isinstance(v, ast.Constant) and isinstance(v.value, str) else "\x00"
                    for v in node.values
                ]
                pieces.append("".join(parts))
    return [_normalise(piece) for piece in pieces]


def _message_fragments() -> list[tuple[int, str]]:
    fragments = []
    for number, line in enumerate(_text(DOCS / "troubleshooting.md").splitlines(), 1):
        if line.startswith("> Message:"):
            spans = _code_spans(line[len("> Message:"):])
            assert spans, f"troubleshooting.md:{number}: a Message line without a backticked fragment"
            fragments.extend((number, span) for span in spans)
    return fragments


def test_troubleshooting_messages_exist_in_the_code() -> None:
    literals = _string_literals()
    fragments = _message_fragments()
    assert len(fragments) >= 30, "troubleshooting.md lost its `> Message:` lines"
    missing = [
        f"troubleshooting.md:{number}: {fragment!r}"
        for number, fragment in fragments
        if not any(_normalise(fragment) in literal for literal in literals)
    ]
    assert not missing, "message fragments not found in poetry_plugin_lambda/:\n" + "\n".join(missing)


# -- 3. console sessions run on the example ------------------------------------------------------------


@dataclass
class Command:
    line: int
    text: str
    output: list[str] = field(default_factory=list)


@dataclass
class Block:
    page: str
    line: int
    mode: str  # "run" or "skip"
    exit_code: int
    commands: list[Command]

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"


def _console_blocks() -> list[Block]:
    blocks = []
    for page in PAGES:
        lines = _text(page).splitlines()
        i = 0
        while i < len(lines):
            if lines[i].strip() != "```console":
                i += 1
                continue
            previous = lines[i - 1].strip() if i > 0 else ""
            marker = MARKER.match(previous)
            mode, exit_code = "run", 0
            if marker and marker.group(1) == "skip":
                mode = "skip"
            elif marker:
                exit_code = int(marker.group(2))
            start = i + 1
            i += 1
            commands: list[Command] = []
            current: Command | None = None
            while i < len(lines) and lines[i].strip() != "```":
                text = lines[i]
                if text.startswith("$ "):
                    while text.endswith("\\") and i + 1 < len(lines):
                        i += 1
                        text = text[:-1] + " " + lines[i].strip()
                    current = None
                    if text.startswith(COMMAND_PREFIX):
                        current = Command(i + 1, text[2:])
                        commands.append(current)
                elif current is not None:
                    current.output.append(text)
                i += 1
            i += 1
            if commands:
                blocks.append(Block(page.name, start, mode, exit_code, commands))
    return blocks


BLOCKS = _console_blocks()


def test_the_docs_have_console_sessions_to_check() -> None:
    assert sum(len(b.commands) for b in BLOCKS if b.mode == "run") >= 8


def _split(command: str) -> tuple[list[str], list[str]]:
    """The poetry command's arguments and what follows it (a pipe, a redirection)."""
    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    tokens = list(lexer)
    for index, token in enumerate(tokens):
        if token in SHELL_OPERATORS or set(token) <= set("|&;<>"):
            head = tokens[:index]
            if head and head[-1].isdigit() and token.startswith((">", "<")):
                head = head[:-1]  # "2>/dev/null"
            return head, tokens[index:]
    return tokens, []


def _example_runtime() -> str:
    match = re.search(r'^runtime = "python(\d+\.\d+)"', _text(EXAMPLE / "service" / "pyproject.toml"), re.M)
    assert match is not None
    return match.group(1)


def _needs_interpreter(args: list[str]) -> str | None:
    """The Python version a command needs on this machine, or None."""
    if not any(a in ("--compile", "--compile-with") or a.startswith("--compile-with=") for a in args):
        return None
    if "--runtime" in args:
        return args[args.index("--runtime") + 1].removeprefix("python")
    return _example_runtime()


@pytest.fixture(scope="module")
def docs_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("docs-poetry-cache")


def _run(args: list[str], cwd: Path, cache: Path) -> subprocess.CompletedProcess[str]:
    env = poetry_env(cache)
    env.pop("SOURCE_DATE_EPOCH", None)
    assert args[:2] == ["poetry", "lambda-bundle"], args
    return subprocess.run(
        [sys.executable, "-m", "poetry", "lambda-bundle", "--no-ansi", *args[2:]],
        cwd=cwd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300, check=False,
    )


def _check_output(where: str, command: Command, args: list[str], rest: list[str], result, service: Path) -> None:
    """The output shown under a command must be what it prints, the example's path aside."""
    shown = [line.replace(DOCS_PROJECT, str(service)).rstrip() for line in command.output]
    while shown and not shown[-1]:
        shown.pop()
    if any(a == "--compile" or a.startswith("--compile-with") for a in args):
        return  # bytecode, sizes and hashes depend on the interpreter that compiled them
    if rest:
        jq = rest[:3] == ["|", "jq", "-r"] and len(rest) == 4 and rest[3].startswith(".")
        if jq and shown:
            report = json.loads(result.stdout)
            assert shown == [str(report[rest[3][1:]])], f"{where}: the jq result shown is not the report's"
        return
    out, err = result.stdout.splitlines(), result.stderr.splitlines()
    printed = [line.rstrip() for line in ([*err, *out] if "json" in args or "--format=json" in args else [*out, *err])]
    while printed and not printed[-1]:
        printed.pop()
    assert shown == printed, (
        f"{where}: the output shown is not what `{command.text}` prints:\n"
        + "\n".join(difflib.unified_diff(shown, printed, "docs", "run", lineterm=""))
    )


@pytest.mark.parametrize("block", BLOCKS, ids=[b.id for b in BLOCKS])
def test_console_sessions_run_on_the_example(block: Block, tmp_path: Path, docs_cache: Path) -> None:
    if block.mode == "skip":
        pytest.skip("marked <!-- docs-check: skip -->")
    from poetry_plugin_lambda.interpreters import find_interpreter

    copy = tmp_path / "example"
    shutil.copytree(EXAMPLE, copy, ignore=shutil.ignore_patterns("build", "dist", "__pycache__"))
    service = copy / "service"
    for command in block.commands:
        where = f"{block.page}:{command.line}"
        args, rest = _split(command.text)
        version = _needs_interpreter(args)
        if version is not None and find_interpreter(version) is None:
            pytest.skip(f"{where}: needs a CPython {version} on this machine")
        result = _run(args, service, docs_cache)
        assert result.returncode == block.exit_code, (
            f"{where}: `{command.text}` exited {result.returncode}, the docs expect {block.exit_code}\n"
            f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"
        )
        assert "Traceback" not in result.stdout + result.stderr, result.stderr
        _check_output(where, command, args, rest, result, service)


# -- 4. the command's help, and the README's links ------------------------------------------------------


def test_help_shows_the_description_usage_and_every_option(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "poetry", "lambda-bundle", "--help", "--no-ansi"],
        cwd=tmp_path, env=poetry_env(tmp_path / "cache"), stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Description:" in out and LambdaBundleCommand.description in out
    assert "Usage:" in out and "lambda-bundle [options]" in out
    for opt in LambdaBundleCommand.options:
        assert re.search(rf"--{re.escape(opt.name)}\b", out), f"--{opt.name} is not in the help"
        if opt.shortcut:
            for short in opt.shortcut.split("|"):
                assert re.search(rf"(^|\s)-{re.escape(short)},", out, re.M), f"-{short} is not in the help"


def _links(text: str) -> list[str]:
    return re.findall(r"\]\(([^)\s]+)\)", text)


def test_readme_links_every_docs_page() -> None:
    readme = _text(ROOT / "README.md")
    linked = {link.split("#", 1)[0] for link in _links(readme)}
    pages = {f"docs/{page.name}" for page in PAGES} | {f"docs/{name}" for name in PENDING}
    missing = sorted(pages - linked)
    assert not missing, f"README.md does not link: {missing}"


def test_index_links_every_page() -> None:
    linked = {link.split("#", 1)[0] for link in _links(_text(DOCS / "index.md"))}
    missing = sorted(({p.name for p in PAGES} | PENDING) - linked - {"index.md"})
    assert not missing, f"docs/index.md does not link: {missing}"


def _anchors(path: Path) -> set[str]:
    """GitHub's anchors for the headings of a Markdown file."""
    anchors = set()
    fenced = False
    for line in _text(path).splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            anchors.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return anchors


def test_relative_links_and_anchors_resolve() -> None:
    broken = []
    for path in [ROOT / "README.md", *PAGES]:
        for link in _links(_text(path)):
            target, _, anchor = link.partition("#")
            if re.match(r"^[a-z]+:", target):
                continue
            resolved = (path.parent / target).resolve() if target else path
            if not resolved.exists():
                if resolved.name not in PENDING:
                    broken.append(f"{path.relative_to(ROOT)}: {link}")
            elif anchor and resolved.suffix == ".md" and anchor not in _anchors(resolved):
                broken.append(f"{path.relative_to(ROOT)}: {link} (no such heading)")
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_no_registry_host_names_in_the_docs() -> None:
    hosts = ("pypi" + ".org", "pythonhosted" + ".org", "npmjs" + ".")
    found = [
        f"{path.relative_to(ROOT)}: {host}"
        for path in [ROOT / "README.md", *PAGES]
        for host in hosts
        if host in _text(path).lower()
    ]
    assert not found, found


TEST_REFERENCE = re.compile(r"`(tests/[\w/]+\.py)(?:::(\w+))?`|`::(\w+)`")


def test_tests_named_in_the_docs_exist() -> None:
    """A guarantee's test, named in a page (`tests/x.py::name`, then `::other` for the same file)."""
    missing = []
    for page in PAGES:
        current: Path | None = None
        for match in TEST_REFERENCE.finditer(page.read_text(encoding="utf-8")):
            path, name, same_file = match.groups()
            if path:
                current = ROOT / path
                if not current.is_file():
                    missing.append(f"{page.name}: {path}")
                    continue
            name = name or same_file
            if name and current is not None:
                defined = {n.name for n in ast.walk(ast.parse(current.read_text())) if isinstance(n, ast.FunctionDef)}
                pattern = re.compile("^" + re.escape(name).replace(r"\*", ".*") + "$")
                if not any(pattern.match(d) for d in defined):
                    missing.append(f"{page.name}: {current.relative_to(ROOT)}::{name}")
    assert missing == []


# -- 5. configuration snippets parse and pass the plugin's own validation ----------------------------


def _toml_blocks() -> list[tuple[str, str]]:
    """Every ```toml block of README.md and docs/*.md, as (where, text)."""
    blocks = []
    for path in [ROOT / "README.md", *PAGES]:
        lines = _text(path).splitlines()
        start = None
        for number, line in enumerate(lines, 1):
            if start is None and line.strip() == "```toml":
                start = number
            elif start is not None and line.strip() == "```":
                blocks.append((f"{path.relative_to(ROOT)}:{start}", "\n".join(lines[start:number - 1])))
                start = None
    return blocks


TOML_BLOCKS = _toml_blocks()


def test_the_docs_have_config_snippets_to_check() -> None:
    assert sum("[tool.lambda-bundle]" in text for _, text in TOML_BLOCKS) >= 5


@pytest.mark.parametrize(("where", "text"), TOML_BLOCKS, ids=[where for where, _ in TOML_BLOCKS])
def test_toml_snippets_parse_and_their_config_is_valid(where: str, text: str) -> None:
    """Every snippet is valid TOML; every `[tool.lambda-bundle]` table passes `spec.read_config`."""
    import tomlkit
    from tomlkit.exceptions import TOMLKitError

    from poetry_plugin_lambda.errors import ConfigError
    from poetry_plugin_lambda.spec import read_config

    try:
        doc = tomlkit.parse(text).unwrap()
    except TOMLKitError as error:
        pytest.fail(f"{where}: not valid TOML: {error}")
    table = doc.get("tool", {}).get("lambda-bundle")
    if table is None:
        return
    try:
        read_config(table)
    except ConfigError as error:
        pytest.fail(f"{where}: [tool.lambda-bundle] is refused by the plugin: {error}")


# -- 6. claims checked against the tools users run (grep level: the AWS tools do not run here) -------


def _section(page: str, heading: str) -> str:
    """The text of `## heading` in docs/page, up to the next `## `."""
    text = _text(DOCS / page)
    start = text.index(f"## {heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start:] if end < 0 else text[start:end]


def test_terraform_recipe_uses_code_sha256_and_a_module_relative_filename() -> None:
    terraform = _section("recipes.md", "Terraform")
    hcl = "\n".join(re.findall(r"```hcl\n(.*?)```", terraform, re.S))
    assert re.search(r"^\s*code_sha256\s*=", hcl, re.M), "the resources must set code_sha256"
    assert not re.search(r"^\s*source_code_hash\s*=", hcl, re.M), "source_code_hash is kept only in state"
    filenames = re.findall(r"^\s*filename\s*=\s*(.+)$", hcl, re.M)
    assert filenames and all("path.module" in f or f.strip().startswith("local.") for f in filenames), filenames
    assert "path.module" in hcl and ".zip" not in "".join(re.findall(r"jq '([^']*)'", hcl))
    assert "5.51" in terraform


def test_publish_layer_version_names_the_layer_its_runtimes_and_architectures() -> None:
    for page in PAGES:
        text = re.sub(r"\\\n\s*", " ", _text(page))  # shell continuation lines
        for match in re.finditer(r"publish-layer-version[^`\n]*(?:\n[^`\n]*)?", text):
            command = match.group(0)
            for flag in ("--layer-name", "--compatible-runtimes", "--compatible-architectures"):
                assert flag in command, f"{page.name}: `{command}` lacks {flag}"


def test_no_page_says_quiet_hides_errors() -> None:
    wrong = re.compile(r"but also (the )?error message|silences error messages|error messages too", re.I)
    for name in ("getting-started.md", "configuration.md", "troubleshooting.md"):
        text = _normalise(_text(DOCS / name))
        assert not wrong.search(text), f"{name} still says -q hides errors: {wrong.search(text)}"
    assert "error messages are always printed" in _normalise(_text(DOCS / "configuration.md"))


def test_serverless_recipe_names_its_major_version() -> None:
    serverless = _section("recipes.md", "Serverless Framework")
    assert "v4" in serverless and "login" in serverless and "v3" in serverless and "python3.12" in serverless


def test_sam_recipe_says_what_sam_build_and_local_invoke_do_with_a_zip() -> None:
    sam = _normalise(_section("recipes.md", "AWS SAM"))
    assert "`sam build` does nothing to a function whose `CodeUri` is a `.zip` file" in sam
    assert "`sam local invoke` works with the ZIP" in sam


def test_install_from_a_checkout_is_said_plainly() -> None:
    for path in (ROOT / "README.md", DOCS / "getting-started.md"):
        text = _normalise(_text(path))
        assert "Until poetry-plugin-lambda is published" in text or "Until the plugin is published" in text, path
        assert "poetry self add" in text and "checkout" in text


def test_test_tools_are_a_dependency_group_not_an_extra() -> None:
    """An extra would make `poetry self show plugins` list hypothesis as the plugin's dependency."""
    import tomlkit

    project = tomlkit.parse(_text(ROOT / "pyproject.toml")).unwrap()
    assert "optional-dependencies" not in project["project"]
    tools = " ".join(project["dependency-groups"]["test"])
    assert "pytest" in tools and "hypothesis" in tools
    readme, ci = _text(ROOT / "README.md"), _text(ROOT / ".ci" / "run")
    for text in (readme, ci):
        assert "--group test" in text and "'.[test]'" not in text
        assert "install -q --upgrade pip" in text  # --group needs pip >= 25.1
    test_command = re.search(r"^# 2\. run the whole test suite\n(.+)$", readme, re.M)
    assert test_command is not None and test_command.group(1).strip() in ci


def test_what_lambda_users_look_for_is_documented() -> None:
    comparison = _text(DOCS / "comparison.md")
    for tool in ("sam build", "serverless-python-requirements", "PythonFunction", "uv", "poetry export"):
        assert tool in comparison, f"comparison.md does not cover {tool}"
    faq = _text(DOCS / "faq.md")
    assert "## Should I bundle boto3?" in faq and "## Over 250 MB unzipped" in faq
    assert "layer" in faq and "container image" in faq
    assert "--slim" in faq and "--slim" in comparison and "size.md" in faq  # built: docs/size.md says what it does
    versions = _section("recipes.md", "Tool versions")
    for tool in ("AWS CLI", "SAM", "CDK", "Terraform", "Serverless", "GitHub Actions"):
        assert tool in versions, f"no tool version for {tool}"
