"""`voxhear baseline train|eval|render`: a thin layer over train.train, evaluate and render."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare `voxhear baseline`'s subcommands on `parser`."""
    sub = parser.add_subparsers(dest="baseline_command", required=True)
    train = sub.add_parser("train", help="train (or resume) on the shards' train split")
    train.add_argument("--shards", required=True, action="append",
                       help="shard path or glob, e.g. 'RUN/shards/*.tar' (repeat for more)")
    train.add_argument("--out", required=True, help="training folder (checkpoints, config, log); resumed if present")
    train.add_argument("--config", help="YAML of baseline settings (see baseline/config.py)")
    train.add_argument("--device", help="cpu, cuda, ... (default: cuda when present)")
    train.add_argument("--threads", type=int, help="torch CPU threads")
    train.add_argument("--stop-at", type=int, help="stop after this step (resume later with the same command)")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.add_argument("overrides", nargs="*", default=[], metavar="KEY=VALUE",
                       help="config overrides, e.g. variant=local steps=1000")

    for name, help_text in (("eval", "score a checkpoint on held-out identities; writes JSON"),
                            ("render", "true vs predicted face, side by side, with the audio (mp4)")):
        command = sub.add_parser(name, help=help_text)
        command.add_argument("checkpoint", help="a .pt from `baseline train` (best.pt or last.pt)")
        command.add_argument("--shards", required=True, action="append", help="shard path or glob (repeatable)")
        command.add_argument("--split", default="test",
                             help="split (default test: held-out identities); eval pools a list such as val,test")
        command.add_argument("--device")
        command.add_argument("--threads", type=int)
        if name == "eval":
            command.add_argument("--out", help="JSON path (default: eval_<split>.json beside the checkpoint)")
        else:
            command.add_argument("--out", required=True, help="mp4 to write")
            command.add_argument("--key", help="clip key (default: the split's first clip)")
    table = sub.add_parser("table", help="Markdown table of eval JSONs: mean ± sd per variant over seeds")
    table.add_argument("results", nargs="+", help="eval JSON files (from `baseline eval`) of one split")


def run_from_args(args: argparse.Namespace) -> int:
    if args.baseline_command == "table":
        from voxhear.baseline.table import ablation_table

        print(ablation_table(args.results), end="")
        return 0
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.baseline_command == "train":
        return _train(args)
    from voxhear.baseline.train import CheckpointError

    try:
        return _score_or_render(args)
    except CheckpointError as error:
        print(f"voxhear baseline: error: {error}", file=sys.stderr)
        return 2


def _score_or_render(args: argparse.Namespace) -> int:
    if args.baseline_command == "eval":
        from voxhear.baseline.evaluate import evaluate_checkpoint, format_result, write_result

        result = evaluate_checkpoint(args.checkpoint, args.shards, split=args.split, device=args.device)
        out = Path(args.out) if args.out else Path(args.checkpoint).with_name(f"eval_{args.split}.json")
        write_result(result, out)
        print(format_result(result), end="")
        print(f"wrote {out}")
        return 0
    from voxhear.baseline.render import render_checkpoint

    info = render_checkpoint(args.checkpoint, args.shards, args.out, split=args.split, key=args.key,
                             device=args.device)
    print(f"wrote {info['out']}: {info['key']}, {info['seconds']:.1f} s")
    return 0


def _train(args: argparse.Namespace) -> int:
    import yaml

    from voxhear.baseline.config import BaselineConfig, BaselineConfigError
    from voxhear.baseline.train import CheckpointError, train

    try:
        cfg = BaselineConfig()
        if args.config:
            cfg = BaselineConfig.from_dict(yaml.safe_load(Path(args.config).read_text()) or {})
        cfg = cfg.with_overrides(args.overrides)
    except (BaselineConfigError, OSError) as error:
        print(f"voxhear baseline: error: {error}", file=sys.stderr)
        return 2
    try:
        summary = train(cfg, args.shards, args.out, device=args.device, stop_at=args.stop_at,
                        progress=not args.quiet)
    except CheckpointError as error:  # a last.pt to resume from that is not plain data
        print(f"voxhear baseline: error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2))
    return 0
