"""`voxhear synth`: the command line over `compose_dataset`."""

from __future__ import annotations

import argparse
import logging
import sys
import time

from voxhear.benchmarks.synth.compose import compose_dataset
from voxhear.benchmarks.synth.options import SynthOptions, SynthOptionsError, default_media_dir


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the options of `voxhear synth` on `parser`."""
    d = SynthOptions.__dataclass_fields__
    parser.add_argument("out", help="output folder (videos/, truth/, ATTRIBUTION.md, manifest.json)")
    parser.add_argument("--videos", type=int, default=d["videos"].default,
                        help="number of videos (default %(default)s)")
    parser.add_argument("--duration", type=float, default=d["duration_s"].default,
                        help="seconds per video (default %(default)s)")
    parser.add_argument("--resolution", default="640x360", help="canvas size WxH, even numbers (default %(default)s)")
    parser.add_argument("--fps", type=float, default=d["fps"].default, help="output frame rate (default %(default)s)")
    parser.add_argument("--seed", type=int, default=d["seed"].default, help="dataset seed (default %(default)s)")
    parser.add_argument("--snr", type=float, nargs=2, metavar=("MIN_DB", "MAX_DB"),
                        default=(d["snr_db_min"].default, d["snr_db_max"].default),
                        help="speech-to-background ratio range in dB, drawn per video (default 5 20)")
    parser.add_argument("--people", type=int, choices=(2, 3), default=d["people"].default,
                        help="2: A and B on screen; 3: plus an off-screen voice from speech/ (default %(default)s)")
    parser.add_argument("--shots", type=int, default=d["shots"].default,
                        help="shots per video; 0 derives it from --mean-shot (default %(default)s)")
    parser.add_argument("--mean-shot", type=float, default=d["mean_shot_s"].default,
                        help="mean shot length in s (default %(default)s)")
    parser.add_argument("--min-shot", type=float, default=d["min_shot_s"].default,
                        help="shortest shot in s (default %(default)s)")
    parser.add_argument("--two-shot-prob", type=float, default=d["two_shot_prob"].default,
                        help="probability that a shot shows both people (default %(default)s)")
    parser.add_argument("--overlap-prob", type=float, default=d["overlap_prob"].default,
                        help="probability that a turn starts before the previous one ends (default %(default)s)")
    parser.add_argument("--offscreen-share", type=float, default=d["offscreen_share"].default,
                        help="chance that a turn goes to the off-screen voice, with --people 3 (default %(default)s)")
    parser.add_argument("--crf", type=int, default=d["crf"].default, help="x264 CRF of the mp4s (default %(default)s)")
    parser.add_argument("--first-index", type=int, default=d["first_index"].default,
                        help="index of the first video id synth-NNNN (default %(default)s)")
    parser.add_argument("--media", default=None,
                        help="shared media folder (default: $VOXHEAR_MEDIA or shared/media beside the repo)")
    parser.add_argument("--people-source", choices=("grid", "wild"), default=d["people_source"].default,
                        help="grid: GRID talking faces; wild: the real single-person recordings of faces-wild/ "
                             "with backchannels, level differences, reverberation and mic noise (default %(default)s)")
    parser.add_argument("--realistic", action="store_true", help="the same as --people-source wild")
    parser.add_argument("--wild-people", default=d["wild_people"].default, metavar="STEM,STEM,...",
                        help="with wild: only these faces-wild recordings as people (default: every usable one; "
                             "python -m voxhear.benchmarks.synth.wild lists them)")
    parser.add_argument("--audio-only", action="store_true",
                        help="compose --videos audio-only conversations of 2-4 real voices (speech/ and faces-wild "
                             "audio) with RTTM truth, for diarization, instead of videos")
    parser.add_argument("--backchannel-rate", type=float, default=d["backchannel_rate"].default,
                        help="with wild: backchannels per second of the other's turn (default %(default)s)")


def options_from_args(args: argparse.Namespace) -> SynthOptions:
    try:
        width, height = (int(v) for v in str(args.resolution).lower().split("x"))
    except ValueError as err:
        raise SynthOptionsError(f"--resolution {args.resolution!r} is not WxH") from err
    return SynthOptions(
        out_dir=args.out, media_dir=args.media or default_media_dir(), videos=args.videos,
        duration_s=args.duration, width=width, height=height, fps=args.fps, seed=args.seed,
        snr_db_min=args.snr[0], snr_db_max=args.snr[1], people=args.people, shots=args.shots,
        mean_shot_s=args.mean_shot, min_shot_s=args.min_shot, two_shot_prob=args.two_shot_prob,
        overlap_prob=args.overlap_prob, offscreen_share=args.offscreen_share, crf=args.crf,
        first_index=args.first_index, people_source="wild" if args.realistic else args.people_source,
        wild_people=args.wild_people, backchannel_rate=args.backchannel_rate, audio_only=args.audio_only)


def run_from_args(args: argparse.Namespace) -> int:
    """Run `voxhear synth`; returns the process exit code."""
    try:
        options = options_from_args(args)
        if options.people_source == "wild" and not options.audio_only:
            from voxhear.benchmarks.synth.wild import wild_pool

            if len(wild_pool(options.media_dir, options.wild_people)) < 2:
                raise SynthOptionsError("config key 'wild_people' must name at least two usable recordings")
    except ValueError as err:
        print(f"voxhear synth: {err}", file=sys.stderr)
        return 2
    started = time.monotonic()
    paths = compose_dataset(options)
    what = "audio-only recording(s)" if options.audio_only else "video(s)"
    print(f"composed {len(paths)} {what} into {options.out_dir} in {time.monotonic() - started:.1f} s")
    for path in paths:
        print(f"  {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="voxhear synth", description=__doc__)
    add_arguments(parser)
    logging.basicConfig(level=logging.WARNING)
    return run_from_args(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
