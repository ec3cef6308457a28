"""The package's code stays in short functions: none has a body of more than 50 lines.

The body is counted from its first statement after the docstring to its end, so long argument
lists and docstrings (which the project wants) do not count against a function.
"""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "kerasdqn"
MAX_BODY_LINES = 50


def function_body_lengths():
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                body = node.body
                if ast.get_docstring(node) is not None and len(body) > 1:
                    body = body[1:]
                yield (
                    f"{path.relative_to(PACKAGE.parent)}:{node.name}",
                    (node.end_lineno - body[0].lineno + 1),
                )


def test_no_function_body_is_longer_than_fifty_lines():
    lengths = dict(function_body_lengths())
    assert len(lengths) > 100  # the walk found the package's functions
    too_long = {name: length for name, length in lengths.items() if length > MAX_BODY_LINES}
    assert too_long == {}
