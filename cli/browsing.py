"""The catalog from the command line: `salon browse`, `salon import`, `salon catalog` (check, repair,
rebuild the index) and `salon pnginfo` (an image's generation parameters)."""

from __future__ import annotations

import argparse

from cli.output import EXIT_BAD_INPUT, console, err_console, print_error
from config import Settings


def pnginfo(args: argparse.Namespace, settings: Settings) -> int:
    from core.errors import InvalidImage
    from engine.infotext import parse_infotext
    from engine.infotext_files import read_infotext

    try:
        text = read_infotext(args.file)
    except InvalidImage as exc:  # refused from its header (a bomb, a 100 MB text chunk): name the file
        print_error(f"{args.file}: {exc.message}")
        return EXIT_BAD_INPUT
    if text is None:
        err_console.print(f"{args.file}: no generation parameters found")
        return 1
    console.print(text, markup=False, soft_wrap=True)
    info = parse_infotext(text)
    console.print()
    console.print(f"prompt: {info.prompt!r}", markup=False)
    console.print(f"negative prompt: {info.negative_prompt!r}", markup=False)
    for key, value in info.params.items():
        console.print(f"{key}: {value}", markup=False)
    return 0


def browse(args: argparse.Namespace, settings: Settings) -> int:
    from rich.table import Table

    from app.oneshot import with_catalog
    from commands.browse import browse_query, count_text, position_text

    if args.family is not None:
        from cli.curating import family

        return family(args, settings)
    if args.show is not None:
        image = with_catalog(settings, lambda catalog: catalog.get(args.guild, args.show))
        if image is None:
            err_console.print(f"no image {args.show} in guild {args.guild}", markup=False)
            return EXIT_BAD_INPUT
        console.print(image.path, markup=False)
        console.print(image.infotext, markup=False, soft_wrap=True)
        return 0
    query = browse_query(
        args.guild,
        keyword=args.keyword,
        filename=args.filename,
        negative=args.negative,
        case_sensitive=args.case_sensitive,
        regex=args.regex,
        rank=args.rank,
        author=args.author,
        model=args.model,
        favourites_of=args.favourites_of,
        sort=args.sort,
        ascending=args.ascending,
        page=args.page,
        page_size=args.page_size,
        deleted=args.recycle_bin,
    )
    page = with_catalog(settings, lambda catalog: catalog.search(query))
    table = Table("id", "file", "rank", "model", "seed", "author", "prompt")
    for image in page.images:
        rank = f"{image.rank_mean:.1f} ({image.rank_count})" if image.rank_count else ""
        row = (str(image.id), image.filename, rank, image.model or "", str(image.seed or ""), image.author)
        table.add_row(*row, image.prompt[:60])
    console.print(table)
    console.print(f"{position_text(page)} ({count_text(page)} images)", markup=False, soft_wrap=True)
    return 0


def import_folder(args: argparse.Namespace, settings: Settings) -> int:
    import getpass

    from app.oneshot import with_catalog

    if not args.folder.is_dir():
        err_console.print(f"folder: {args.folder} is not a folder", markup=False)
        return EXIT_BAD_INPUT
    author = args.author or getpass.getuser()
    records, skipped = with_catalog(
        settings, lambda catalog: catalog.import_folder(args.folder.resolve(), args.guild, author)
    )
    for line in skipped:
        err_console.print(f"skipped {line}", markup=False, soft_wrap=True)
    with_info = sum(1 for record in records if record.infotext)
    console.print(
        f"{len(records)} image(s) in the catalog from {args.folder} ({with_info} with generation info), "
        f"{len(skipped)} skipped",
        markup=False,
        soft_wrap=True,
    )
    return 0


def catalog(args: argparse.Namespace, settings: Settings) -> int:
    from app.oneshot import with_catalog

    if args.action == "rebuild-index":
        count = with_catalog(settings, lambda catalog: catalog.rebuild_index())
        console.print(f"text index rebuilt: {count} image(s)", markup=False)
        return 0
    report = with_catalog(
        settings,
        lambda catalog: catalog.check(
            [settings.outputs_path],
            repair=args.repair,
            skip=[settings.outputs_path / "animations"],  # frames of animations are not catalog images
        ),
    )
    console.print(
        f"rows without files: {len(report.rows_without_files)}, files without rows: "
        f"{len(report.files_without_rows)}, rows not indexed: {len(report.rows_not_indexed)}, "
        f"index entries without rows: {len(report.index_without_rows)}"
        + (" (repaired)" if args.repair and not report.clean else ""),
        markup=False,
        soft_wrap=True,
    )
    return 0 if report.clean or args.repair else 1
