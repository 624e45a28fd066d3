"""The `voxhear` command: a thin layer over the library functions."""

from __future__ import annotations

import argparse
import contextlib
import glob
import logging
import os
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

if TYPE_CHECKING:
    from voxhear.pipeline.config import RunConfig


def _cmd_run(args: argparse.Namespace) -> int:
    from voxhear.pipeline.config import load_config
    from voxhear.pipeline.runner import run_pipeline

    kinds = [_is_override(a) for a in args.inputs]
    overrides = [a for a, override in zip(args.inputs, kinds) if override]
    inputs = [a for a, override in zip(args.inputs, kinds) if not override]
    if inputs:
        overrides.append("inputs=" + yaml.safe_dump(inputs, default_flow_style=True).strip())
    for flag, key in ((args.run_dir, "run_dir"), (args.runner, "runner"), (args.ray_address, "ray.address")):
        if flag:
            overrides.append(f"{key}={flag}")
    if args.retry_failed:
        overrides.append("retry_failed=true")
    if args.keep_work:
        overrides.append("keep_work=true")
    config = load_config(args.config, overrides)
    with _ray_session(config, verbose=args.verbose) as ray_log:
        summary = run_pipeline(config, show_progress=not args.quiet)
    print(summary.format())
    if ray_log is not None:
        print(f"ray log: {ray_log}")
    return 0


@contextlib.contextmanager
def _ray_session(config: RunConfig, verbose: bool) -> Iterator[Path | None]:
    """Around a run with the Ray runner: Ray's own output (its logs, Ray Data's progress and
    warnings, its workers' output) goes to RUN/logs/ray.log unless --verbose, so that the terminal
    shows voxhear's progress bar and summary; a cluster to join is joined first, so that a wrong
    address or token fails at once in one line, before the run starts (no progress bar yet); and
    Ray is left before the summary is printed. Yields the log's path (None: not redirected)."""
    if config.runner != "ray":
        yield None
        return
    import ray

    from voxhear.pipeline import executors, raylog
    from voxhear.pipeline.remote_run import local_run_dir

    path = local_run_dir(config.run_dir, config.staging_dir) / "logs" / "ray.log"
    connected_before = ray.is_initialized()  # by the caller of main(): theirs to leave
    with contextlib.nullcontext(None) if verbose else raylog.ray_output_to(path) as redirected:
        try:
            if config.ray.address or os.environ.get("RAY_ADDRESS"):
                executors.RayExecutor(config.ray).connect()
            yield redirected
        finally:
            if not connected_before:
                # Inside the redirection: what Ray prints while it stops goes to the log too.
                executors.disconnect()


def _cmd_pull(args: argparse.Namespace) -> int:
    """A local copy of what the bucket holds (shards, manifests, config), for `verify`, `qc`,
    `datasheet`, `takedown` and `eval`, which take local run directories."""
    from voxhear.pipeline.config import ConfigError
    from voxhear.pipeline.remote_run import RemoteRunDir, is_remote

    if not is_remote(args.run_url):
        raise ConfigError(f"{args.run_url} is not a URL (s3://bucket/run); a local run directory needs no pull")
    downloaded = RemoteRunDir(args.run_url, args.folder).pull()
    print(f"{args.folder}: {downloaded} files downloaded from {args.run_url}")
    return 0


def _refuse_remote_run_dir(args: argparse.Namespace) -> None:
    """`verify`, `qc`, `datasheet` and `eval` read a run directory from local files: one on object
    storage is named as such, with the command that makes a local copy. (`takedown` stages it.)"""
    from voxhear.pipeline.config import ConfigError
    from voxhear.pipeline.remote_run import is_remote

    if args.func in (_cmd_run, _cmd_pull) or getattr(args.func, "__module__", "").endswith(".takedown"):
        return
    for attr in ("run_dir", "run"):
        value = getattr(args, attr, None)
        if isinstance(value, str) and is_remote(value):
            raise ConfigError(
                f"{value} is a run directory on object storage, and this command reads local files: copy it "
                f"first with `voxhear pull {value} FOLDER` and give it FOLDER"
            )


def _is_override(arg: str) -> bool:
    """`key=value` (dotted identifier on the left) is an override, unless its key is no config key
    and the argument names an existing path or matches a glob (`take=2.mp4`): that is an input, as
    is anything else. An unknown key that names nothing stays an override (did-you-mean error)."""
    key, sep, _ = arg.partition("=")
    if not (sep and all(part.isidentifier() for part in key.split("."))):
        return False
    path = os.path.expanduser(arg)
    names_path = os.path.lexists(path) or (glob.has_magic(path) and bool(glob.glob(path)))
    if key.split(".")[0] in _config_keys():
        if names_path:
            logging.getLogger(__name__).warning("%s is read as a config override; write ./%s for the file", arg, arg)
        return True
    return not names_path


def _config_keys() -> set[str]:
    """The top-level config keys: the engine's and one per stage section."""
    from voxhear.pipeline.config import top_level_keys

    return set(top_level_keys())


def _config_without_inputs(path: str | None, overrides: list[str]) -> RunConfig:
    """The config of a command that reads no inputs (`models`, `config`, `schema`).

    An installed voxhear has no bundled sample, so its default `inputs` is empty: only `voxhear run`
    refuses that. Every other key is checked as usual (a config that fails only with inputs added
    failed for another reason, which is raised).
    """
    from voxhear.pipeline.config import ConfigError, load_config

    try:
        return load_config(path, overrides)
    except ConfigError:
        config = load_config(path, [*overrides, "inputs=[unused]"])
        config.inputs = []
        return config


def _cmd_models(args: argparse.Namespace) -> int:
    from voxhear.pipeline.models import ModelStore, ModelStoreError

    store = ModelStore.from_config(_config_without_inputs(args.config, args.overrides).models)
    verify = args.action == "verify"
    bad = 0
    width = max(len(n) for n in store.registry)
    for name, spec in sorted(store.registry.items()):
        if verify:
            try:
                resolved = store.resolve(name) if not args.no_download else None
                state, detail = ("ok", f"{resolved.path} (via {resolved.where})") if resolved else store.status(name)
            except ModelStoreError as error:
                state, detail = "error", str(error)
        else:
            state, detail = store.status(name, verify=False)
            state = "found" if state == "ok" else state
        bad += state not in ("ok", "found")
        size = sum(f.size for f in spec.files) / 1e6
        print(f"{name:<{width}}  {state:<8} {size:8.1f} MB  {spec.licence:<12.12}  {detail}")
    if verify and bad:
        print(f"{bad} model(s) did not verify", file=sys.stderr)
        return 1
    return 0


def _cmd_config(args: argparse.Namespace) -> int:
    from voxhear.pipeline import registry
    from voxhear.pipeline.config import RunConfig, config_to_dict
    from voxhear.pipeline.settings import bounds_of

    config = _config_without_inputs(args.config, args.overrides)
    resolved = config_to_dict(config)  # engine keys, then one section per registered stage
    if not args.explain:
        print(yaml.safe_dump(resolved, sort_keys=False), end="")
        return 0

    def flow(value: object) -> str:
        return yaml.safe_dump(value, default_flow_style=True, width=10**6).removesuffix("\n...\n").strip()

    def keys(cls: type, values: dict, indent: str) -> None:
        for key, value in values.items():
            bounds = bounds_of(cls, key)
            described = bounds.describe() if bounds else ""
            print(f"{indent}{key} = {flow(value)}" + (f"    [{described}]" if described else ""))

    keys(RunConfig, {k: v for k, v in resolved.items() if not isinstance(v, dict)}, "")
    stages = {cls.name: cls for cls in registry.stage_classes()}
    for name, values in resolved.items():
        if not isinstance(values, dict):
            continue
        print(f"\n{name}:")
        if name in stages:
            cls = stages[name]
            state = "runs" if name in config.stages else "not in `stages`"
            print(
                f"  # stage ({state}); requires: {', '.join(cls.requires) or '-'}; "
                f"models: {', '.join(cls.models(config.section(name))) or '-'}"
            )
            for reason in cls.reasons:
                print(
                    f"  # rejects {reason.name} ({', '.join(reason.keys) or 'a property of the input'}): {reason.doc}"
                )
        keys(type(config.section(name) if name in stages else getattr(config, name)), values, "  ")
    return 0


def _cmd_schema(args: argparse.Namespace) -> int:
    from voxhear.manifests import SourceManifestRow, clip_row_type
    from voxhear.pipeline.models import ModelStore
    from voxhear.pipeline.records import SourceRecord
    from voxhear.pipeline.runner import build_stages, final_record_type
    from voxhear.pipeline.stage import RunContext

    config = _config_without_inputs(args.config, [])
    stages = build_stages(config, RunContext(run_dir=Path(config.run_dir), model_store=ModelStore()))
    tables: dict[str, type[SourceRecord]] = {
        "sources": SourceManifestRow,
        "clips": clip_row_type(final_record_type(stages)),
    }
    for name in args.tables or list(tables):
        print(f"manifests/{name}.parquet")
        for column in tables[name].schema():
            print(f"  {column.name:<22} {column.type}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="voxhear", description=__doc__)
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log at INFO level; `run`: Ray's output on the terminal too"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the pipeline (resumes an existing run directory)")
    run.add_argument(
        "inputs",
        nargs="*",
        metavar="INPUT|KEY=VALUE",
        help="files, directories, globs, list files or URIs (default: the config's inputs, "
        "i.e. the bundled sample), and key=value config overrides such as shards.max_samples=100",
    )
    run.add_argument("--config", help="run YAML (default: the embedded defaults)")
    run.add_argument("--run-dir", help="where shards, manifests and the work area go")
    run.add_argument("--runner", choices=["ray", "local"], help="Ray Data (default) or in-process")
    run.add_argument("--ray-address", help="join a Ray cluster (else RAY_ADDRESS, else a local Ray)")
    run.add_argument("--retry-failed", action="store_true", help="process inputs that failed before again")
    run.add_argument(
        "--keep-work",
        action="store_true",
        help="keep every input's intermediates in RUN/work after it is committed (debugging, voxhear eval); "
        "by default they are deleted and the summary says what is left",
    )
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    run.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS,
        help="log at INFO level and leave Ray's own output (its logs, Ray Data's progress, its workers' "
        "output) on the terminal; by default it goes to RUN/logs/ray.log",
    )
    run.set_defaults(func=_cmd_run)

    models = sub.add_parser("models", help="list or verify the models in the model store")
    models.add_argument("action", choices=["list", "verify"])
    models.add_argument("--config")
    models.add_argument("--no-download", action="store_true", help="verify only what is present")
    models.add_argument("overrides", nargs="*", default=[])
    models.set_defaults(func=_cmd_models)

    schema = sub.add_parser("schema", help="print the declared Arrow schemas of the manifests")
    schema.add_argument("tables", nargs="*", choices=["sources", "clips"], default=[])
    schema.add_argument("--config")
    schema.set_defaults(func=_cmd_schema)

    config = sub.add_parser("config", help="print the resolved configuration")
    config.add_argument("--config")
    config.add_argument(
        "--explain",
        action="store_true",
        help="per section: each key with its bounds; per stage: requires, models, rejects",
    )
    config.add_argument("overrides", nargs="*", default=[])
    config.set_defaults(func=_cmd_config)

    pull = sub.add_parser(
        "pull", help="copy a run directory on object storage (s3://...) to a local folder, or update a copy"
    )
    pull.add_argument("run_url", help="the run directory's URL, e.g. s3://bucket/runs/v2")
    pull.add_argument("folder", type=Path, help="local folder (created; an earlier copy is updated)")
    pull.set_defaults(func=_cmd_pull)

    from voxhear import baseline
    from voxhear.benchmarks import evaluation, speed, synth
    from voxhear.manifests import takedown, verify
    from voxhear.qc import cli as qc_cli

    for name, module, help_text in (
        ("synth", synth, "compose interview videos with exact ground truth"),
        ("eval", evaluation, "score a run against ground truth"),
        ("bench", speed, "time the pipeline on a named workload, and the same stages as per-file tools"),
        ("qc", qc_cli, "QC dashboard of a run: one HTML file, or served live"),
        ("datasheet", qc_cli.datasheet_command, "write a run's datasheet (Markdown) and Croissant JSON-LD"),
        ("baseline", baseline, "train, score and render the bundled talk/listen baseline"),
        ("verify", verify, "check a run: shard sha256s, every sample decodes, manifests match shards"),
        ("takedown", takedown, "remove samples from a run for good (by key, source id or identity)"),
    ):
        command = sub.add_parser(name, help=help_text)
        module.add_arguments(command)
        command.set_defaults(func=module.run_from_args)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    # Positionals after options (`run --run-dir R a.mp4 k=v`) are left over by argparse, which
    # cannot intermix them with subcommands; they are inputs or overrides like the leading ones.
    args, extra = parser.parse_known_args(argv)
    stray = [e for e in extra if e.startswith("-")]
    if stray or (extra and not hasattr(args, "inputs") and not hasattr(args, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(stray or extra)}")
    if extra:
        if hasattr(args, "inputs"):
            args.inputs = list(args.inputs) + extra
        else:
            args.overrides = list(args.overrides) + extra
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    from voxhear.pipeline.config import ConfigError
    from voxhear.pipeline.models import ModelStoreError
    from voxhear.pipeline.stage import SystemFault, system_oserror

    try:
        _refuse_remote_run_dir(args)
        return int(args.func(args) or 0)
    except (ConfigError, ModelStoreError) as error:
        print(f"voxhear: error: {error}", file=sys.stderr)
        return 2
    except (SystemFault, OSError) as error:  # the machine's fault (a full disk while committing, say)
        if isinstance(error, OSError) and system_oserror(error) is None:
            raise
        print(f"voxhear: error: {error}", file=sys.stderr)
        return 1
    except RuntimeError as error:
        from voxhear.pipeline.executors import RayConnectionError

        if not isinstance(error, RayConnectionError):
            raise
        if args.verbose:
            traceback.print_exc()
        print(f"voxhear: error: {error}", file=sys.stderr)  # says what to set; Ray's output went to its log
        return 1


if __name__ == "__main__":
    sys.exit(main())
