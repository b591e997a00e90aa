#!/usr/bin/env python3
"""The core library's modules depend only downward: no module reaches up to an ancestor's own
items (a climb: ``crate::VERSION`` from ``metrics``, ``super::helper`` from ``reduce/tokens.rs``
where ``helper`` lives in ``reduce/mod.rs``), and no two modules depend on each other, directly
or through others (a circle). Reads ``src/**/*.rs``: each file is a module (``mod.rs`` its
folder's), its references are the ``crate::`` and ``super::`` paths outside ``#[cfg(test)]``
modules; ``lib.rs``'s re-exports for users are not references.

    python3 scripts/check_layers.py [SRC]     # exit 1 with each climb and circle named

Also: no shipped product (the FFI, the CLI, the Python bindings, the crates, the plugins) uses
`mint_audit::internals`, which only the benchmarks may. CI runs it beside clippy (.ci/run).
"""

import re
import sys
from pathlib import Path

# A path that goes on with a macro's metavariable (`$crate::reduce::kernels::$module::f`) is
# resolved where the macro expands, not where it is written: left out (the atomic group keeps
# a shorter prefix of it from matching instead).
PATH = re.compile(r"\b(crate|super)((?>(?:::[A-Za-z_][A-Za-z0-9_]*)+))(?!::\$)")
# `use crate::x::{a, b}` and `use super::{x, y}`: each name in braces is a path of its own.
GROUP = re.compile(r"\b(crate|super)((?:::[A-Za-z_][A-Za-z0-9_]*)*)::\{([^{}]*)\}")


def module_of(src, file):
    parts = list(file.relative_to(src).with_suffix("").parts)
    if parts[-1] in ("mod", "lib"):
        parts.pop()
    return tuple(parts)


def code_of(text):
    """The file without comments, strings and its test modules."""
    text = re.sub(r"//[^\n]*", "", text)
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', text)
    # `pub(in crate::a::b)` says who may see an item, not what it uses.
    text = re.sub(r"pub\(in [^)]*\)", "pub", text)
    cut = re.search(r"#\[cfg\(test\)\]\s*(pub(\([a-z]+\))?\s+)?mod\s+\w+\s*\{", text)
    return text[: cut.start()] if cut else text


def inline_modules(code):
    """For each position of `code`, the inline modules (`mod x { ... }`) enclosing it, as a list of
    (start, end, name)."""
    spans = []
    for m in re.finditer(r"\bmod\s+([A-Za-z_][A-Za-z0-9_]*)\s*\{", code):
        depth, i = 0, m.end() - 1
        while i < len(code):
            depth += {"{": 1, "}": -1}.get(code[i], 0)
            if depth == 0:
                break
            i += 1
        spans.append((m.end(), i, m.group(1)))
    return spans


def references(module, code):
    """(target path) for each crate:: or super:: path, made absolute. Inside an inline module of
    the file, `super` is one level further down."""
    inline = inline_modules(code)

    def here(position):
        return module + tuple(name for a, b, name in inline if a <= position < b)

    found = []
    spans = []
    for m in GROUP.finditer(code):
        spans.append(m.span())
        for name in m.group(3).split(","):
            name = name.strip().split(" as ")[0].strip()
            if name and name != "self" and name != "*":
                found.append((m.start(), m.group(1), m.group(2) + "::" + name.split("::")[0]))
            elif name == "self":
                found.append((m.start(), m.group(1), m.group(2)))
    for m in PATH.finditer(code):
        if any(a <= m.start() < b for a, b in spans):
            continue
        found.append((m.start(), m.group(1), m.group(2)))
    out = []
    for position, root, rest in found:
        segments = [s for s in rest.split("::") if s]
        base = () if root == "crate" else here(position)[:-1]
        while segments and segments[0] == "super":
            base, segments = base[:-1], segments[1:]
        out.append(base + tuple(segments))
    return out


def main():
    src = Path(sys.argv[1] if len(sys.argv) > 1 else "src")
    # A `tests.rs` is a test module (declared under #[cfg(test)]), as the inline ones are.
    files = {module_of(src, f): f for f in sorted(src.rglob("*.rs")) if f.name != "tests.rs"}
    modules = set(files)
    edges = {}
    climbs = []
    for module, file in files.items():
        if module == ():
            continue  # lib.rs: the crate's face (re-exports), not a dependency
        for target in references(module, code_of(file.read_text())):
            # The deepest module the path names; what follows is an item.
            owner = max((target[:i] for i in range(len(target) + 1) if target[:i] in modules), key=len)
            if owner == module or owner[: len(module)] == module:
                continue  # itself or its own children
            if module[: len(owner)] == owner:
                climbs.append(
                    f"{'/'.join(module)}: {'::'.join(target) or 'crate'} lives in an ancestor, "
                    f"{'/'.join(owner) or 'lib.rs'}"
                )
                continue
            # A dependency between the two siblings under their common ancestor.
            common = 0
            while common < min(len(module), len(owner)) and module[common] == owner[common]:
                common += 1
            a, b = module[: common + 1], owner[: common + 1]
            edges.setdefault(a, set()).add(b)
    circles = []
    for start in sorted(edges):
        stack = [(start, [start])]
        while stack:
            node, path = stack.pop()
            for nxt in edges.get(node, ()):
                if nxt == start and len(path) > 1 and min(path) == start:
                    circles.append(" -> ".join("/".join(p) for p in path + [start]))
                elif nxt not in path:
                    stack.append((nxt, path + [nxt]))
    for c in sorted(set(climbs)):
        print(f"climb: {c}")
    for c in sorted(set(circles)):
        print(f"circle: {c}")
    print(
        f"{len(files)} modules, {sum(len(v) for v in edges.values())} dependencies between siblings; "
        f"{len(set(climbs))} climbs, {len(set(circles))} circles"
    )
    repo = src.resolve().parent
    internal = [
        str(f.relative_to(repo))
        for folder in ("ffi", "cli", "bindings/python/src", "crates", "plugins")
        for f in sorted((repo / folder).rglob("*.rs"))
        if "mint_audit::internals" in f.read_text()
    ]
    for f in internal:
        print(f"internals: {f} uses mint_audit::internals (the benchmarks' hooks, not an API)")
    return 1 if climbs or circles or internal else 0


if __name__ == "__main__":
    sys.exit(main())
