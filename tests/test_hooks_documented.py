"""The docs cannot drift from the hooks (datasette style).

Every hook spec in ``blitz.hookspecs`` must appear in docs/plugins.md's hook reference with its
exact signature, no documented hook may be missing from the specs, every hook must have a
``test_hook_<name>`` test, and the worked example's code must be the example module's code.
"""

from __future__ import annotations

import ast
import inspect
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from blitz import hookspecs

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "plugins.md"
TESTS = Path(__file__).resolve().parent
EXAMPLE_MODULE = ROOT / "examples" / "blitz-example-plugin" / "blitz_example.py"

_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def hook_specs() -> dict[str, Callable[..., object]]:
    """Every function marked with ``@hookspec`` in blitz.hookspecs."""
    marker = f"{hookspecs.PROJECT}_spec"
    return {
        name: func for name, func in vars(hookspecs).items()
        if inspect.isfunction(func) and hasattr(func, marker)
    }


def signature_line(func: Callable[..., object]) -> str:
    """``def name(a: T, b: U) -> R`` from the spec (annotations are strings: future annotations)."""
    signature = inspect.signature(func)

    def text(annotation: object) -> str:
        return annotation if isinstance(annotation, str) else inspect.formatannotation(annotation)

    params = ", ".join(f"{p.name}: {text(p.annotation)}" for p in signature.parameters.values())
    return f"def {func.__name__}({params}) -> {text(signature.return_annotation)}"


def section(markdown: str, title: str) -> str:
    """The text of the ``## title`` section, up to the next ``## `` heading."""
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", markdown, re.MULTILINE | re.DOTALL)
    assert match, f"docs/plugins.md has no '## {title}' section"
    return match.group(1)


def code_blocks(markdown: str, language: str | None = None) -> list[str]:
    return [body for lang, body in _FENCE.findall(markdown) if language is None or lang == language]


def normalized(code: str) -> str:
    return re.sub(r"\s+", " ", code).strip()


def test_there_are_hooks() -> None:
    specs = hook_specs()
    assert {"register_models", "on_epoch_end"} <= set(specs), specs


@pytest.mark.parametrize("hook", sorted(hook_specs()))
def test_hook_is_documented_with_its_signature(hook: str) -> None:
    reference = code_blocks(section(DOCS.read_text(encoding="utf-8"), "Hook reference"), "python")
    expected = normalized(signature_line(hook_specs()[hook]))
    assert any(expected in normalized(block) for block in reference), (
        f"docs/plugins.md's hook reference must show `{expected}` in a python code block"
    )


def test_documented_hooks_exist() -> None:
    reference = section(DOCS.read_text(encoding="utf-8"), "Hook reference")
    documented = {
        name for block in code_blocks(reference, "python")
        for name in re.findall(r"^def (\w+)\(", block, re.MULTILINE)
    }
    assert documented == set(hook_specs())


def test_spec_signatures_are_fully_typed() -> None:
    for name, func in hook_specs().items():
        signature = inspect.signature(func)
        assert signature.return_annotation is not inspect.Signature.empty, name
        assert all(p.annotation is not inspect.Parameter.empty for p in signature.parameters.values()), name
        assert (func.__doc__ or "").strip(), f"hook spec {name} needs a docstring"


def collect_test_function_names() -> dict[str, set[str]]:
    """The test functions of each test file under tests/, this one excluded."""
    names: dict[str, set[str]] = {}
    for path in sorted(TESTS.glob("test_*.py")):
        if path.resolve() == Path(__file__).resolve():
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names[path.name] = {
            node.name for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test_")
        }
    return names


@pytest.mark.parametrize("hook", sorted(hook_specs()))
def test_hook_has_a_test(hook: str) -> None:
    tested_in = [file for file, names in collect_test_function_names().items() if any(n.startswith(f"test_hook_{hook}") for n in names)]
    assert tested_in, f"add a test named test_hook_{hook}... to a test file under tests/"
    assert any(implements(TESTS / file, hook) for file in tested_in), (
        f"the test_hook_{hook} test's file must implement the hook (an @hookimpl def {hook}), not only name it"
    )


def implements(path: Path, hook: str) -> bool:
    """Whether ``path`` defines a function ``hook`` decorated with ``hookimpl`` (bare or called)."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == hook:
            for decorator in node.decorator_list:
                target = decorator.func if isinstance(decorator, ast.Call) else decorator
                if ast.unparse(target).split(".")[-1] == "hookimpl":
                    return True
    return False


def test_worked_example_code_is_the_example_module() -> None:
    """Each python block of the worked example appears verbatim in blitz_example.py."""
    example = section(DOCS.read_text(encoding="utf-8"), "Worked example: blitz-example-plugin")
    source = EXAMPLE_MODULE.read_text(encoding="utf-8")
    blocks = code_blocks(example, "python")
    assert len(blocks) >= 4
    for block in blocks:
        assert block in source, f"docs/plugins.md shows code that is not in blitz_example.py:\n{block}"
