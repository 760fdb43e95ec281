"""The shape of dstune's code, as issue 27 measures it: file and function lengths, module-level import cycles,
and where a framework is named outside its own folder.

    python scripts/code_shape.py            # figures; exit 0
    python scripts/code_shape.py --check    # exit 1 when a limit is broken (files > 400 lines, functions > 80,
                                            # a module-level import cycle)

Written with the standard library's `ast` (a linter such as ruff's C901 counts branches, not lines, and no
kept tool reports module-level cycles between a package's own modules).
"""

from __future__ import annotations

import argparse
import ast
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "dstune"
MAX_FILE_LINES = 400
MAX_FUNCTION_LINES = 80


@dataclass(frozen=True)
class Function:
    module: str
    name: str
    lines: int


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def functions(tree: ast.Module, module: str) -> list[Function]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno is not None:
            start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            found.append(Function(module, node.name, node.end_lineno - start + 1))
    return found


def top_level_imports(tree: ast.Module, module: str, is_package: bool, known: set[str]) -> set[str]:
    """dstune modules imported at module level (not inside a function, and not under TYPE_CHECKING)."""
    here = module.split(".") if is_package else module.split(".")[:-1]
    targets: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        for sub in ast.walk(node) if isinstance(node, (ast.If, ast.Try)) else [node]:
            if isinstance(sub, ast.Import):
                targets |= {a.name for a in sub.names if a.name.split(".")[0] == "dstune"}
            elif isinstance(sub, ast.ImportFrom):
                base = here[: len(here) - (sub.level - 1)] if sub.level else []
                name = ".".join([*base, *(sub.module.split(".") if sub.module else [])])
                if not name.startswith("dstune"):
                    continue
                for alias in sub.names:
                    full = f"{name}.{alias.name}"
                    targets.add(full if full in known else name)
    return {t for t in targets if t in known and t != module}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="exit 1 when a limit is broken")
    args = parser.parse_args(argv)

    paths = sorted(PACKAGE.rglob("*.py"))
    trees = {module_name(p): (p, ast.parse(p.read_text(encoding="utf-8"))) for p in paths}
    known = set(trees)
    lengths = {m: len(p.read_text(encoding="utf-8").splitlines()) for m, (p, _) in trees.items()}
    funcs = [f for m, (_, tree) in trees.items() for f in functions(tree, m)]
    graph = {m: top_level_imports(tree, m, p.name == "__init__.py", known) for m, (p, tree) in trees.items()}
    loops = cycles(graph)
    naming = sorted(
        str(p.relative_to(ROOT))
        for p in paths
        if "openrlhf" in p.read_text(encoding="utf-8").lower() and "frameworks" not in p.relative_to(PACKAGE).parts
    )
    long_files = sorted(((n, m) for m, n in lengths.items() if n > MAX_FILE_LINES), reverse=True)
    long_funcs = sorted(funcs, key=lambda f: -f.lines)

    print(f"modules: {len(trees)}  lines: {sum(lengths.values())}  functions: {len(funcs)}")
    print(f"median_file_lines: {statistics.median(lengths.values()):.0f}")
    print(f"median_function_lines: {statistics.median(f.lines for f in funcs):.0f}")
    print("longest functions:")
    for f in long_funcs[:10]:
        print(f"  {f.lines:4d}  {f.module}.{f.name}")
    print(f"files_over_{MAX_FILE_LINES}: {len(long_files)}" + "".join(f"\n  {n:4d}  {m}" for n, m in long_files))
    over = [f for f in funcs if f.lines > MAX_FUNCTION_LINES]
    print(f"functions_over_{MAX_FUNCTION_LINES}: {len(over)}")
    print(f"import_cycles: {len(loops)}" + "".join(f"\n  {' <-> '.join(c)}" for c in loops))
    print(f"modules_naming_openrlhf_outside_frameworks: {len(naming)}" + "".join(f"\n  {n}" for n in naming))
    broken = bool(long_files or over or loops or naming)
    return 1 if args.check and broken else 0


if __name__ == "__main__":
    sys.exit(main())
