"""`voxhear qc report|serve|screenshot RUN` and `voxhear datasheet RUN`.

Thin: heavy imports (pandas, the server, selenium) happen only when a command runs, so that
registering these commands costs the rest of the CLI nothing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from types import SimpleNamespace


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare `voxhear qc` and its actions on `parser`."""
    actions = parser.add_subparsers(dest="qc_action", required=True)
    report = actions.add_parser("report", help="write one self-contained HTML dashboard (default RUN/qc/report.html)")
    report.add_argument("run", help="pipeline run folder (with manifests/)")
    report.add_argument("--out", help="where to write the HTML")
    report.add_argument("--gallery", type=int, default=6, help="sample clips to embed (default 6)")
    report.add_argument("--rejects", type=int, default=6, help="rejected clips to show (default 6)")
    report.add_argument("--max-media-mb", type=float, default=20.0,
                        help="cap on the media embedded in the file, in MB (default 20)")

    serve = actions.add_parser("serve", help="serve the dashboard with live filtering over the manifests")
    serve.add_argument("run", help="pipeline run folder (with manifests/)")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    serve.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 picks a free one)")

    shot = actions.add_parser("screenshot", help="save a PNG of the dashboard with headless chromium")
    shot.add_argument("run", help="pipeline run folder (with manifests/)")
    shot.add_argument("--out", required=True, help="PNG path")
    shot.add_argument("--width", type=int, default=1280)
    shot.add_argument("--height", type=int, default=1600)


def run_from_args(args: argparse.Namespace) -> int:
    """Carry out `voxhear qc ACTION`; returns the exit code."""
    if not (Path(args.run) / "manifests" / "sources.parquet").exists():
        print(f"voxhear qc: {args.run} has no manifests/sources.parquet (is it a run directory?)", file=sys.stderr)
        return 2
    if args.qc_action == "report":
        from voxhear.qc.report import ReportOptions, write_report

        options = ReportOptions(gallery_clips=args.gallery, reject_clips=args.rejects, max_media_mb=args.max_media_mb)
        path = write_report(args.run, args.out, options)
        print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
        return 0
    if args.qc_action == "serve":
        from voxhear.qc.server import serve

        serve(args.run, args.host, args.port)
        return 0
    from voxhear.qc.browser import BrowserUnavailable, screenshot_run

    try:
        path = screenshot_run(args.run, Path(args.out), args.width, args.height)
    except BrowserUnavailable as error:
        print(f"voxhear qc screenshot: {error}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0


def add_datasheet_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the options of `voxhear datasheet` on `parser`."""
    parser.add_argument("run", help="pipeline run folder (with manifests/)")
    parser.add_argument("--info", help="YAML with the human parts (see datasheets/sample.yaml)")
    parser.add_argument("--licences", help="YAML mapping of input file name, source_id or glob to its licence")
    parser.add_argument("--out", help="Markdown path (default RUN/datasheet.md)")
    parser.add_argument("--croissant", help="Croissant JSON-LD path (default beside the Markdown)")
    parser.add_argument("--no-croissant", action="store_true", help="write only the Markdown")
    parser.add_argument("--no-validate", action="store_true", help="skip the mlcroissant validation")


def run_datasheet_from_args(args: argparse.Namespace) -> int:
    """Write the datasheet (and the Croissant file); returns the exit code."""
    if not (Path(args.run) / "manifests" / "sources.parquet").exists():
        print(f"voxhear datasheet: {args.run} has no manifests/sources.parquet (is it a run directory?)",
              file=sys.stderr)
        return 2
    from voxhear.qc.datasheet import DatasheetError, write_datasheet

    try:
        result = write_datasheet(args.run, args.out, args.info, args.licences,
                                 croissant=False if args.no_croissant else args.croissant,
                                 validate=not args.no_validate)
    except (DatasheetError, FileNotFoundError) as error:
        print(f"voxhear datasheet: {error}", file=sys.stderr)
        return 2
    print(f"wrote {result['datasheet']}")
    if result["croissant"]:
        problems = result["problems"]
        if problems is None:
            state = "not validated" + ("" if args.no_validate else " (mlcroissant is not installed)")
        else:
            state = "valid (mlcroissant)" if not problems else "INVALID"
        print(f"wrote {result['croissant']}: {state}")
        for problem in problems or []:
            print(f"  {problem}", file=sys.stderr)
        if problems:
            return 1
    return 0


# `voxhear datasheet`, registered by voxhear.pipeline.cli like a module with these two functions.
datasheet_command = SimpleNamespace(add_arguments=add_datasheet_arguments, run_from_args=run_datasheet_from_args)
