"""MkDocs hooks of the svflow documentation (registered in ``mkdocs.yml``).

- ``on_files``: the repository's ``figures/*.png`` become site files under
  ``figures/``, so pages link them as ``../figures/basins.png`` and
  ``mkdocs build --strict`` checks every such link. The PNGs stay where the
  figure runner writes them; nothing is copied into ``docs/``.
- ``on_post_build``: copies the parts of MathJax 3 that the pages use from the
  ``django-static-mathjax`` package (a plain copy of MathJax's ``es5``
  directory) into ``site/javascripts/mathjax/``. The site then renders its
  equations without a network connection.
- ``on_startup``: a log filter drops the cross-reference warnings listed in
  ``KNOWN_DOCSTRING_DEFECTS`` (docstring text that Markdown reads as a
  reference link); any other warning still fails ``--strict``.
- ``on_page_content``: docstrings use Sphinx roles (``:func:`simulate```);
  Markdown renders them as ``:func:<code>simulate</code>``. The hook turns
  each into a cross-reference to the API entry of that name (resolved by
  mkdocs-autorefs; a name without an entry stays plain code).
- ``on_config``: every public top-level name of ``svflow`` must have an
  ``::: svflow.NAME`` entry on an API page, and every entry must name an
  existing public name (a warning, hence an error under ``--strict``).
  ``tests/test_docs.py`` runs the same check without MkDocs.
"""

from __future__ import annotations

import ast
import logging
import re
import shutil
from pathlib import Path

log = logging.getLogger("mkdocs.hooks.svflow")

ROOT = Path(__file__).resolve().parent.parent
FIGURES = ROOT / "figures"
API_DIR = ROOT / "docs" / "api"
MATHJAX_PARTS = (
    "tex-chtml.js",
    "output/chtml/fonts/woff-v2",
    "input/tex/extensions",
    "ui",
    "a11y",
)
# Docstring text Markdown reads as a reference link ``[text][id]``: autorefs
# warns "Could not find cross-reference target 'id'". Each entry is
# (object, id); delete an entry once its docstring is rewritten.
KNOWN_DOCSTRING_DEFECTS: tuple[tuple[str, str], ...] = ()
SUBNAMESPACES = ("studies", "explicit")
_ENTRY = re.compile(r"^:::\s+svflow\.((?:studies\.|explicit\.)?[A-Za-z_][A-Za-z0-9_]*)", re.MULTILINE)


def public_names() -> set[str]:
    """Every documented public name: ``NAME`` for the top level of ``svflow`` and
    ``studies.NAME`` / ``explicit.NAME`` for its public sub-namespaces (read
    from the sources, no import)."""
    top = _module_names(ROOT / "svflow" / "__init__.py") - set(SUBNAMESPACES)
    for sub in SUBNAMESPACES:
        top |= {f"{sub}.{n}" for n in _module_names(ROOT / "svflow" / sub / "__init__.py")}
    return top


def _module_names(init: Path) -> set[str]:
    """Names ``svflow/__init__.py`` exports, read from its source (no import).

    When the module defines ``__all__`` as a literal list, that list is the
    answer. Otherwise (no ``__all__``, or one derived from the bindings) a
    name is public when a module-level import, assignment, function or class
    (also inside a module-level ``if`` or ``try``) binds it and it does not
    start with an underscore. Imports inside functions (a lazy
    ``__getattr__``) do not count.
    """
    tree = ast.parse(init.read_text(encoding="utf-8"))

    def statements(body):
        for node in body:
            yield node
            if isinstance(node, ast.If):
                yield from statements(node.body + node.orelse)
            elif isinstance(node, ast.Try):
                handlers = [s for h in node.handlers for s in h.body]
                yield from statements(node.body + handlers + node.orelse + node.finalbody)

    names: set[str] = set()
    for node in statements(tree.body):
        if isinstance(node, ast.Assign):
            targets = [t.id for t in node.targets if isinstance(t, ast.Name)]
            if "__all__" in targets:
                try:
                    return set(ast.literal_eval(node.value))
                except ValueError:  # __all__ derived from the bindings above: read those
                    continue
            names.update(targets)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
    return {n for n in names if not n.startswith("_")}


def documented_names(api_dir: Path = API_DIR) -> dict[str, list[str]]:
    """``name -> [api pages]`` for every ``::: svflow.NAME`` entry."""
    found: dict[str, list[str]] = {}
    for page in sorted(api_dir.glob("*.md")):
        for name in _ENTRY.findall(page.read_text(encoding="utf-8")):
            found.setdefault(name, []).append(page.name)
    return found


def api_coverage() -> tuple[list[str], list[str], list[str]]:
    """(public names without an entry, entries of no public name, names entered twice)."""
    public = public_names()
    documented = documented_names()
    missing = sorted(public - set(documented))
    unknown = sorted(set(documented) - public)
    twice = sorted(n for n, pages in documented.items() if len(pages) > 1)
    return missing, unknown, twice


class _KnownDefects(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        return not any(
            f"({obj}) Could not find cross-reference target '{ref}'" in msg
            for obj, ref in KNOWN_DOCSTRING_DEFECTS
        )


def on_startup(command, dirty):
    logging.getLogger("mkdocs.plugins.mkdocs_autorefs._internal.plugin").addFilter(_KnownDefects())


_ROLE = re.compile(r":(?:func|class|meth|data|attr|mod|obj|exc):<code>~?([A-Za-z_][\w.]*)</code>")


def _identifier(name: str, public: set[str]) -> str:
    """The API identifier a role's target refers to (``svflow.NAME`` when public)."""
    parts = name.split(".")
    if parts[0] == "svflow":
        parts = parts[1:]
    if len(parts) == 1 or (len(parts) == 2 and parts[0] in SUBNAMESPACES):
        last = parts[-1]
        if last in public:
            return f"svflow.{last}"
        for sub in SUBNAMESPACES:
            if f"{sub}.{last}" in public:
                return f"svflow.{sub}.{last}"
    return name


def on_page_content(html, page, config, files):
    public = public_names()

    def link(match: re.Match) -> str:
        name = match.group(1)
        return f'<autoref identifier="{_identifier(name, public)}" optional><code>{name}</code></autoref>'

    return _ROLE.sub(link, html)


def on_config(config):
    missing, unknown, twice = api_coverage()
    if missing:
        log.warning("public svflow names without an API entry (docs/api/*.md): %s", ", ".join(missing))
    if unknown:
        log.warning("API entries of names svflow does not export: %s", ", ".join(unknown))
    if twice:
        log.warning("API entries that appear on more than one page: %s", ", ".join(twice))
    return config


def on_files(files, config):
    from mkdocs.exceptions import PluginError
    from mkdocs.structure.files import File

    pngs = sorted(FIGURES.glob("*.png"))
    if not pngs:
        raise PluginError(f"no figures in {FIGURES}: run `python -m svflow.figures --quick` first")
    for png in pngs:
        files.append(File.generated(config, f"figures/{png.name}", abs_src_path=str(png)))
    return files


def _mathjax_dir() -> Path:
    from mkdocs.exceptions import PluginError

    try:
        import mathjax  # the django-static-mathjax distribution
    except ImportError as err:
        raise PluginError(
            "MathJax is missing: install the docs extra, pip install -e '.[docs]' "
            "(it brings django-static-mathjax, a copy of MathJax 3)"
        ) from err
    es5 = Path(mathjax.__file__).parent / "static" / "mathjax" / "es5"
    if not (es5 / "tex-chtml.js").is_file():
        raise PluginError(f"no tex-chtml.js under {es5}: reinstall django-static-mathjax")
    return es5


def on_post_build(config):
    es5 = _mathjax_dir()
    dest = Path(config["site_dir"]) / "javascripts" / "mathjax"
    for part in MATHJAX_PARTS:
        src = es5 / part
        if src.is_dir():
            shutil.copytree(src, dest / part, dirs_exist_ok=True)
        else:
            (dest / part).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / part)
