"""The command line every scenario script shares.

A scenario (``scenarios/<name>.py``) runs one study at a named setting and
saves the dataset; its figure (``svflow.figures``) runs the same study at the
same setting, read from the same ``QUICK`` / ``FULL`` dicts, so the two never
drift apart. :func:`scenario_cli` gives every script one interface:

    python scenarios/<name>.py [--quick | --setting NAME] [--out PATH] [script options]

``--out`` is checked for writability before any computation (a wrong path
fails in a second, not after an hour), and the chosen setting is printed
before the run starts.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping

__all__ = ["scenario_cli"]


def scenario_cli(
    doc: str | None,
    settings: Mapping[str, Mapping],
    argv=None,
    *,
    options: Callable[[argparse.ArgumentParser], None] | None = None,
    out_default: str | None = None,
    quick_help: str = "the quick setting (small grid)",
    header: str | None = None,
) -> tuple[argparse.Namespace, str, dict]:
    """Parse a scenario's command line: ``[--quick | --setting NAME] [--out PATH]``.

    Args:
        doc: the script's docstring (shown by ``--help`` as written: the usage
            lines stay one per line).
        settings: ``name -> keyword arguments of the study``; must hold
            ``"quick"`` and ``"full"`` (the default), may hold more.
        argv: the arguments (default ``sys.argv[1:]``).
        options: adds the script's own arguments to the parser.
        out_default: default of ``--out`` (``None``: save nothing unless asked).
        quick_help: help text of ``--quick``.
        header: printed before the setting (e.g. what the study fixes).

    Returns:
        ``(args, setting name, a copy of that setting)``; ``args.quick`` is
        true exactly when the quick setting was chosen. Exits with status 2
        (argparse's usage error) when ``--quick`` and ``--setting`` disagree
        or ``--out`` cannot be written; nothing is printed to stdout then.
    """
    from ._dataset import check_writable

    missing = {"quick", "full"} - set(settings)
    if missing:
        raise ValueError(f"settings must name 'quick' and 'full'; missing {sorted(missing)}.")
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help=quick_help)
    p.add_argument(
        "--setting",
        choices=tuple(settings),
        default=None,
        help="a named setting (default: full, or quick with --quick)",
    )
    p.add_argument("--out", default=out_default, help="netCDF path for the dataset")
    if options is not None:
        options(p)
    args = p.parse_args(argv)
    if args.quick and args.setting not in (None, "quick"):
        p.error(f"--quick and --setting {args.setting} disagree")
    if args.out:  # fail now, not after the computation
        try:
            check_writable(args.out)
        except OSError as e:
            p.error(f"--out: {e}")
    setting = args.setting or ("quick" if args.quick else "full")
    args.quick = setting == "quick"
    if header:
        print(header)
    cfg = dict(settings[setting])
    print(f"[{setting} setting]", ", ".join(f"{k}={_fmt(v)}" for k, v in cfg.items()))
    return args, setting, cfg


def _fmt(v) -> str:
    """A setting's value for humans: floats in %g, sequences element by element."""
    import numbers

    if isinstance(v, (list, tuple)):
        return "(" + ", ".join(_fmt(x) for x in v) + ("," if len(v) == 1 else "") + ")"
    if isinstance(v, numbers.Real) and not isinstance(v, (bool, numbers.Integral)):
        return f"{float(v):g}"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {_fmt(x)}" for k, x in v.items()) + "}"
    return str(v)
