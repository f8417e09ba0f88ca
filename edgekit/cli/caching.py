"""`edgekit cache list|size|clean|prune`: what edgekit keeps under $EDGEKIT_CACHE_DIR (default
~/.cache/edgekit) and its bound (EDGEKIT_CACHE_MAX_MB, default 5120; 0: none)."""

from __future__ import annotations

import time

import click

from edgekit.cli.options import CliContext, common


@click.group()
def cache() -> None:
    """Prepared models, onnx2tf conversions, the release store and the local device's work directory:
    list, size, clean, prune (least recently used first). Stores hold the cache under
    EDGEKIT_CACHE_MAX_MB (default 5120 MB) by evicting the least recently used entries."""


def _show(app: CliContext, record, entries: bool) -> None:
    from edgekit.cli import render

    if app.emit(record):
        return
    out = render.stdout()
    if entries and record.entries:
        rows = [
            [e["kind"], str(e["path"]).rsplit("/", 1)[-1], render.mb(e["bytes"]),
             time.strftime("%Y-%m-%d %H:%M", time.localtime(e["last_used"]))]
            for e in record.entries
        ]  # fmt: skip
        out.print(render.table(f"cache entries in {record.root} (least recently used first)",
                               ("kind", "entry", "size", "last used"), rows))  # fmt: skip
    for kind, row in record.by_kind().items():
        out.print(f"{kind}: {row['entries']} entr(ies), {render.mb(row['bytes'])}")
    bound = "no bound" if record.bound_bytes is None else f"bound {render.mb(record.bound_bytes)}"
    out.print(f"total {render.mb(record.total_bytes)} in {record.root} ({bound}, EDGEKIT_CACHE_MAX_MB)")
    for entry in record.removed:
        out.print(
            f"removed {entry['kind']} {str(entry['path']).rsplit('/', 1)[-1]} ({render.mb(entry['bytes'])})"
        )


@cache.command("list")
@common
def list_(app: CliContext) -> None:
    """Every entry, least recently used first."""
    from edgekit.api.caching import cache_list

    _show(app, cache_list(), True)


@cache.command()
@common
def size(app: CliContext) -> None:
    """Bytes per kind and in total, and the bound."""
    from edgekit.api.caching import cache_list

    _show(app, cache_list(), False)


@cache.command()
@click.option(
    "--kind", "kinds", multiple=True, help="Only this kind (prepared, onnx2tf, release, artifacts)."
)
@common
def clean(app: CliContext, kinds: tuple[str, ...]) -> None:
    """Remove every entry (of --kind)."""
    from edgekit.api.caching import cache_clean

    _show(app, cache_clean(list(kinds)), False)


@cache.command()
@click.option(
    "--max-mb", type=float, default=None, help="Evict least recently used entries down to this size."
)
@click.option(
    "--max-age", "max_age", type=float, default=None, help="Evict entries unused for this many days."
)
@common
def prune(app: CliContext, max_mb: float | None, max_age: float | None) -> None:
    """Evict old, then least recently used entries (default: down to EDGEKIT_CACHE_MAX_MB)."""
    from edgekit.api.caching import cache_prune

    _show(app, cache_prune(max_mb, max_age), False)
