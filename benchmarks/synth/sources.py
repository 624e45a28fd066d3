"""Licences and credits of the shared media, transcribed from `shared/media/SOURCES.md`.

Kept as a table in code rather than parsed from the Markdown so that a reworded SOURCES.md
cannot silently change what ATTRIBUTION.md says; a test checks that every file the composer can
pick has an entry here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Licence:
    """Where one shared recording comes from and on what terms it may be used."""

    corpus: str
    licence: str
    origin: str


GRID = Licence("GRID audio-visual corpus (Cooke, Barker, Cunningham, Shao 2006)", "CC-BY 4.0",
               "GRID corpus samples as redistributed by the LipNet repository (rizkiarm/LipNet, MIT)")
LIBRISPEECH = Licence("LibriSpeech (SLR12)", "CC-BY 4.0", "via librosa's and lhotse's test data")

_BY_NAME: dict[str, Licence] = {
    "common_voice_en_651325.mp3": Licence("Mozilla Common Voice", "CC0", "Mozilla Common Voice"),
    "jfk.flac": Licence("1961 inaugural address of John F. Kennedy", "public domain",
                        "via the openai/whisper tests"),
    "Kevin_MacLeod_-_Vibe_Ace.hq.ogg": Licence(
        "Vibe Ace by Kevin MacLeod", "CC-BY 3.0 (credit: Kevin MacLeod)",
        "Free Music Archive, via librosa data"),
    "Hungarian_Dance_number_5_-_Allegro_in_F_sharp_minor_(string_orchestra).hq.ogg": Licence(
        "Hungarian Dance No. 5 by Johannes Brahms, US Army Strings", "public domain",
        "Musopen, via librosa data"),
    "glacier-bay-humpback.hq.ogg": Licence(
        "Glacier Bay humpback whale song, NPS (Chris Gabriele, 2020)", "public domain",
        "NPS, via librosa data"),
    "doing_the_dishes.wav": Licence(
        "doing_the_dishes (Google Speech Commands background noise)", "CC-BY 4.0",
        "Google Speech Commands, via pyroomacoustics"),
}

# faces-wild/ (shared/media/faces-wild/SOURCES.md): demo assets of public repositories. The
# repositories' licences cover their code; the footage belongs to third parties, so whatever is
# composed from it is for internal development only and is never published.
_WILD_TERMS = "internal development only: third-party footage, do not publish"


def _wild(corpus: str, repo: str, repo_licence: str, where: str) -> Licence:
    return Licence(corpus, f"{_WILD_TERMS} (repository licence {repo_licence})", f"{repo} {where}")


_LATENTSYNC = ("bytedance/LatentSync", "Apache-2.0")
_PCAVS = ("Hangz-nju-cuhk/Talking-Face_PC-AVS", "CC-BY-4.0")
_DEEPAVSR = ("smeetrs/deep_avsr", "MIT")
WILD_BY_NAME: dict[str, Licence] = {
    "latentsync_demo1_video.mp4": _wild("stock-like footage, origin not stated", *_LATENTSYNC,
                                        "assets/demo1_video.mp4 @ a229c39"),
    "latentsync_demo2_video.mp4": _wild("stock-like footage, origin not stated", *_LATENTSYNC,
                                        "assets/demo2_video.mp4 @ a229c39"),
    "latentsync_demo3_video.mp4": _wild("stock-like footage, origin not stated", *_LATENTSYNC,
                                        "assets/demo3_video.mp4 @ a229c39"),
    "visualvoice_noisy_restaurant.mp4": _wild("restaurant interview, rights not stated",
                                              "facebookresearch/VisualVoice", "CC-BY-NC-4.0",
                                              "av-enhancement/test_videos/noisy_restaurant.mp4 @ e57e126"),
    "visualvoice_interview.mp4": _wild("TV split-screen interview, broadcaster copyright",
                                       "facebookresearch/VisualVoice", "CC-BY-NC-4.0",
                                       "test_videos/interview.mp4 @ e57e126"),
    "ghost_2person.mp4": _wild("video-chat recording, third party", "ai-forever/ghost", "Apache-2.0",
                               "examples/videos/2person.mp4 @ a3dcd65 (pull/4/head)"),
    "edtalk_uncrop_Obama.mp4": _wild("2010 Oval Office address (US federal work, probably public domain)",
                                     "tanshuai0219/EDTalk", "Apache-2.0", "test_data/uncrop_Obama.mp4 @ 06a9a96"),
    "real3dportrait_May_5s.mp4": _wild("UK government address, rights unclear", "yerfor/Real3DPortrait", "MIT",
                                       "data/raw/examples/May_5s.mp4 @ a9d70c7"),
    "wav2lipgfpgan_kim_7s_raw.mp4": _wild("AMC promotional clip, AMC copyright", "ajay-sainy/Wav2Lip-GFPGAN",
                                          "none", "inputs/kim_7s_raw.mp4 @ a4e7ee2"),
    "liveportrait_d20.mp4": _wild("film/TV or social-media clip, source not stated", "KwaiVGI/LivePortrait", "MIT",
                                  "assets/examples/driving/d20.mp4 @ 1986663"),
    "deepavsr_00016.mp4": _wild("LRS2 test clip (BBC, non-commercial research only)", *_DEEPAVSR,
                                "audio_only/demo/00016.mp4 @ dc09f08 (pull/10/head)"),
    "deepavsr_00019.mp4": _wild("LRS2 test clip (BBC, non-commercial research only)", *_DEEPAVSR,
                                "audio_only/demo/00019.mp4 @ dc09f08 (pull/10/head)"),
    **{f"pcavs_{name}.mp4": _wild("VoxCeleb2 crop (copyright with the video owners)", *_PCAVS,
                                  f"misc/{name.rsplit('_', 1)[0]}/{name.rsplit('_', 1)[1]}.mp4 (history)")
       for name in ("Audio_Source_00015", "Audio_Source_00086", "Input_00098", "Pose_Source_00473",
                    "Pose_Source_517600055", "Pose_Source_620900105", "Pose_Source_741400163")},
}

SPEECH_FILES = (
    "198-209-0000.hq.ogg", "3436-172162-0000.hq.ogg", "2412-153948-0000.flac",
    "2412-153948-0001.flac", "common_voice_en_651325.mp3", "jfk.flac",
    "cmu_arctic_us_aew_a0001.wav", "cmu_arctic_us_aew_a0002.wav", "cmu_arctic_us_aew_a0003.wav",
    "cmu_arctic_us_axb_a0004.wav", "cmu_arctic_us_axb_a0005.wav", "cmu_arctic_us_axb_a0006.wav",
)
BACKGROUND_FILES = (
    "Kevin_MacLeod_-_Vibe_Ace.hq.ogg",
    "Hungarian_Dance_number_5_-_Allegro_in_F_sharp_minor_(string_orchestra).hq.ogg",
    "glacier-bay-humpback.hq.ogg",
    "doing_the_dishes.wav",
)


def licence_of(path: Path) -> Licence:
    """The licence of a shared media file, by its folder and name."""
    name = Path(path).name
    if Path(path).parent.name == "faces-wild" or name in WILD_BY_NAME:
        if name not in WILD_BY_NAME:
            raise KeyError(f"no licence recorded for {path}; add it to voxhear.benchmarks.synth.sources")
        return WILD_BY_NAME[name]
    if Path(path).parent.name == "faces-grid" or name.endswith(".mpg"):
        return GRID
    if name in _BY_NAME:
        return _BY_NAME[name]
    if name.startswith("cmu_arctic_"):
        return Licence("CMU ARCTIC", "CMU ARCTIC licence (free use, attribution)",
                       "CMU ARCTIC, via pyroomacoustics examples")
    if name[:1].isdigit():
        return LIBRISPEECH
    raise KeyError(f"no licence recorded for {path}; add it to voxhear.benchmarks.synth.sources")


def credit_of(path: Path) -> str:
    """The first line of the file's credit sidecar (`<stem>.txt`), when it has one."""
    path = Path(path)
    if path.parent.name == "faces-wild":
        return ""  # the .txt files there are LRS2 transcripts, not credits
    stem = path.name.split(".")[0]
    sidecar = path.with_name(stem + ".txt")
    if sidecar.exists():
        return sidecar.read_text(encoding="utf-8").strip().splitlines()[0].strip()
    return ""


def media_relative(path: Path, media_dir: Path) -> str:
    """`path` relative to the media folder (``faces-grid/bbaf2n.mpg``), else its file name.

    Written into the truth and ATTRIBUTION.md instead of absolute paths, which would make the
    output depend on where the media folder happens to be.
    """
    try:
        return str(Path(path).relative_to(media_dir))
    except ValueError:
        return Path(path).name
