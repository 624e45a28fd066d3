"""The audio stages: source in, source out, between ingest and scene cut.

- `SeparationStage`: speech and background stems (`speech + background == audio16k` exactly).
- `DiarizationStage`: speaker turns of the separated speech as RTTM; a source without speech is
  filtered (`no_speech`).
- `AsrStage`: words with times and speakers (`words.parquet`).

Every stage records its real-time factor (wall seconds of the stage per second of audio) in
`SourceRecord.audio_rtf`.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import pyarrow as pa

from voxhear.pipeline.io import atomic_write_table, atomic_write_text
from voxhear.pipeline.records import SourceRecord
from voxhear.pipeline.stage import Bound, FilteredError, InputError, RejectReason, Resources, Stage
from voxhear.stages.audio.config import AsrConfig, DiarizationConfig, SeparationConfig

if TYPE_CHECKING:  # the models' modules are imported by setup(), on the workers
    from pathlib import Path

    from voxhear.stages.audio.asr import Transcriber
    from voxhear.stages.audio.diarization import Diarizer
    from voxhear.stages.audio.separation import FileSignal, SeparationBackend

WORDS_SCHEMA = pa.schema(
    [
        pa.field("word", pa.string(), nullable=False),
        pa.field("start_s", pa.float64(), nullable=False),
        pa.field("end_s", pa.float64(), nullable=False),
        pa.field("speaker", pa.string(), nullable=False),
        pa.field("probability", pa.float64(), nullable=False),
    ]
)


# Seconds of the mix the separation stage reads, separates and writes at a time.
SEPARATION_PIECE_S = 20.0


def _torch_threads(n: int) -> None:
    import torch

    if n > 0:
        torch.set_num_threads(n)


class SeparationStage(Stage[SourceRecord, SourceRecord]):
    """Speech/background separation (`separation.backend`: deepfilternet_onnx, deepfilternet or demucs)."""

    name = "separation"
    input_type = SourceRecord
    output_type = SourceRecord
    config_class = SeparationConfig
    requires = ("ingest",)
    uses_models = True

    config: SeparationConfig

    def __init__(self, config: SeparationConfig, context) -> None:
        super().__init__(config, context)
        self.backend: SeparationBackend | None = None

    @classmethod
    def models(cls, config: SeparationConfig) -> list[str]:
        return [config.demucs_model] if config.backend == "demucs" else ["deepfilternet3"]

    @classmethod
    def resources_for(cls, config: SeparationConfig) -> Resources:
        # Both DeepFilterNet runtimes run on CPUs here; Demucs uses a GPU when the config asks for one.
        return Resources(
            cpus=float(config.threads),
            gpus=config.gpus if config.backend == "demucs" else 0.0,
            memory_gb=config.memory_gb,
        )

    def setup(self) -> None:
        from voxhear.stages.audio.separation import DeepFilterNetBackend, DemucsBackend

        cfg = self.config
        if cfg.backend == "demucs":
            _torch_threads(cfg.threads)
            self.backend = DemucsBackend.from_store(
                self.context.model_store,
                cfg.demucs_model,
                overlap=cfg.demucs_overlap,
                segment_s=cfg.demucs_segment_s or None,
            )
            return
        # Both DeepFilterNet runtimes load the store's sha256-verified DeepFilterNet3_onnx.tar.gz.
        model = self.context.model_store.resolve("deepfilternet3").file()
        if cfg.backend == "deepfilternet_onnx":
            from voxhear.stages.audio.deepfilternet_onnx import DeepFilterNetOnnxBackend

            self.backend = DeepFilterNetOnnxBackend(
                model, atten_lim_db=cfg.atten_lim_db, post_filter_beta=cfg.post_filter_beta, threads=cfg.threads
            )
        else:
            self.backend = DeepFilterNetBackend(
                model, atten_lim_db=cfg.atten_lim_db, post_filter_beta=cfg.post_filter_beta
            )

    def process(self, row: SourceRecord) -> list[SourceRecord]:
        from voxhear.stages.audio.separation import FileSignal, speech_signal, write_exact_stems

        if self.backend is None:
            self.setup()
        backend = self.backend
        assert backend is not None, "setup() loads the backend"
        started = time.perf_counter()
        mix = FileSignal(row.audio_uri)
        if mix.length == 0:
            raise InputError("empty_audio", f"{row.audio_uri} has no samples")
        # The original-rate audio is the better input for a 44.1/48 kHz model (it has the high band).
        source = FileSignal(row.audio_orig_uri) if row.audio_orig_uri else mix
        # Read, separated, split and written a piece at a time: memory does not grow with the input.
        speech = speech_signal(backend, source, source.rate, mix.rate)
        work = self.context.source_work_dir(row.source_id)
        piece = max(1, round(SEPARATION_PIECE_S * mix.rate))
        speech_path, background_path = work / "speech.flac", work / "background.flac"
        if self.config.residue_taps:
            # The separator's own speech stays for diarization (SourceRecord.separated_uri); the
            # stems get its residue back.
            separated_path = work / "separated.flac"
            # No background yet: the stems are split again, from the speech with its residue.
            write_exact_stems(mix, speech, mix.rate, separated_path, None, piece)
            self._return_residue(mix, separated_path, speech_path, background_path, piece)
            row.separated_uri = str(separated_path)
        else:
            write_exact_stems(mix, speech, mix.rate, speech_path, background_path, piece)
            row.separated_uri = str(speech_path)
        row.speech_uri = str(speech_path)
        row.background_uri = str(background_path)
        row.separation_backend = backend.name
        row.audio_rtf = {**row.audio_rtf, self.name: _rtf(started, mix.length / mix.rate)}
        return [row]

    def _return_residue(
        self, mix: FileSignal, separated_path: Path, speech_path: Path, background_path: Path, piece: int
    ) -> None:
        """The stems with the separator's residue moved from the background back to the speech
        (stages/audio/residue.py), from the separator's written speech: one pass to fit, one to
        apply (the separator made its speech front to back once and is not run again)."""
        from voxhear.stages.audio.residue import ResidueReturned, Unlimited, fit_residue_gains
        from voxhear.stages.audio.separation import FileSignal, write_exact_stems

        cfg = self.config
        # DeepFilterNet's attenuation limit kept some of the mix in its speech: the residue is
        # fitted to the speech without it (Unlimited), and the limit's share of the mix stays.
        limit = 0.0 if cfg.backend == "demucs" or cfg.atten_lim_db >= 100 else 10 ** (-cfg.atten_lim_db / 20)
        separated = Unlimited(FileSignal(separated_path), mix, limit)
        gains = fit_residue_gains(separated, mix, mix.rate, cfg.residue_taps, cfg.residue_ridge)
        returned = ResidueReturned(separated, mix.rate, gains)
        write_exact_stems(mix, returned, mix.rate, speech_path, background_path, piece)


class DiarizationStage(Stage[SourceRecord, SourceRecord]):
    """pyannote diarization of the separated speech; RTTM in the work area."""

    name = "diarization"
    input_type = SourceRecord
    output_type = SourceRecord
    config_class = DiarizationConfig
    # Diarizes the separated speech when separation ran, else the mix.
    requires = ("ingest",)
    reasons = (
        RejectReason(
            "no_speech",
            ("diarization.min_speech_s",),
            "less diarized speech than the bound",
            (Bound("diarization.min_speech_s", "sources", "speech_s", "min"),),
        ),
    )
    uses_models = True

    config: DiarizationConfig

    def __init__(self, config: DiarizationConfig, context) -> None:
        super().__init__(config, context)
        self.diarizer: Diarizer | None = None

    @classmethod
    def models(cls, config: DiarizationConfig) -> list[str]:
        if config.pipeline == "campplus":
            return ["pyannote-segmentation-3.0", "campplus"]
        return ["pyannote-speaker-diarization-3.1"]

    def setup(self) -> None:
        from voxhear.stages.audio.diarization import Diarizer

        cfg = self.config
        _torch_threads(cfg.threads)
        self.diarizer = Diarizer(
            self.context.model_store,
            pipeline=cfg.pipeline,
            segmentation_step=cfg.segmentation_step,
            threshold=cfg.threshold,
            min_cluster_size=cfg.min_cluster_size,
            min_duration_off=cfg.min_duration_off,
            embedding_max_s=cfg.embedding_max_s,
            min_speakers=cfg.min_speakers or None,
            max_speakers=cfg.max_speakers or None,
            refine_iterations=cfg.refine_iterations,
            refine_min_s=cfg.refine_min_s,
            resegment_window_s=cfg.resegment_window_s,
            merge_threshold=cfg.merge_threshold,
            window_s=cfg.window_s,
            link_threshold=cfg.link_threshold,
            overlap_step=cfg.overlap_step,
            overlap_min_count=cfg.overlap_min_count,
            embedding_backend=cfg.embedding_backend,
            threads=cfg.threads,
        )

    def process(self, row: SourceRecord) -> list[SourceRecord]:
        from voxhear.stages.audio.diarization import rttm_text, speech_seconds, with_overlap_turns

        if self.diarizer is None:
            self.setup()
        diarizer = self.diarizer
        assert diarizer is not None, "setup() loads the diarizer"
        started = time.perf_counter()
        # The separator's own speech, without the residue the stems get back: the room that
        # residue holds splits one voice into several speakers (a real recording went from one
        # diarized speaker to three).
        separated = row.separator_speech_uri
        if self.config.input == "both" and separated:
            turns, seconds = diarizer.diarize_file(row.audio_uri, voices_path=separated)
        else:
            source = row.audio_uri if self.config.input != "speech" else (separated or row.audio_uri)
            turns, seconds = diarizer.diarize_file(source)
        if self.config.speech_gate_db is not None and self.config.input != "speech" and separated:
            from voxhear.stages.audio.asr import SpeechFile
            from voxhear.stages.audio.speech_gate import gate_turns, speech_share_db

            share = speech_share_db(SpeechFile(separated), SpeechFile(row.audio_uri))
            turns = gate_turns(turns, share, self.config.speech_gate_db)
        turns = [t for t in turns if t.end - t.start >= self.config.min_turn_s]
        row.audio_rtf = {**row.audio_rtf, self.name: _rtf(started, seconds)}
        row.speech_s = round(speech_seconds(turns), 3)
        row.n_speakers = len({t.speaker for t in turns})
        if row.speech_s < self.config.min_speech_s:
            raise FilteredError(
                "no_speech",
                f"diarization found {row.speech_s:.2f} s of speech "
                f"(< diarization.min_speech_s={self.config.min_speech_s}) in the {self.config.input}",
            )
        if self.config.mix_overlap and row.audio_uri:
            regions = self.hear_overlap(row)
            if self.config.overlap_neighbour_s is not None:
                turns = with_overlap_turns(turns, regions, self.config.overlap_neighbour_s)
                row.speech_s = round(speech_seconds(turns), 3)
        path = self.context.source_work_dir(row.source_id) / "turns.rttm"
        atomic_write_text(path, rttm_text(row.source_id, turns))
        row.rttm_uri = str(path)
        return [row]

    def hear_overlap(self, row: SourceRecord) -> list[tuple[float, float]]:
        """Write where the row's mix holds two or more voices at once to the source's
        overlap.rttm, point `row.overlap_uri` at it (`diarization.mix_overlap`) and return the
        regions ([start, end) seconds)."""
        from voxhear.stages.audio.diarization import OVERLAP_SPEAKER, Turn, rttm_text

        if self.diarizer is None:
            self.setup()
        assert self.diarizer is not None, "setup() loads the diarizer"
        regions = self.diarizer.overlap_file(row.audio_uri, min_s=self.config.min_turn_s)
        path = self.context.source_work_dir(row.source_id) / "overlap.rttm"
        atomic_write_text(path, rttm_text(row.source_id, [Turn(a, b, OVERLAP_SPEAKER) for a, b in regions]))
        row.overlap_uri = str(path)
        return regions


class AsrStage(Stage[SourceRecord, SourceRecord]):
    """whisperx/faster-whisper words of the separated speech inside the diarized turns."""

    name = "asr"
    input_type = SourceRecord
    output_type = SourceRecord
    config_class = AsrConfig
    requires = ("diarization",)
    uses_models = True

    config: AsrConfig

    def __init__(self, config: AsrConfig, context) -> None:
        super().__init__(config, context)
        self.transcriber: Transcriber | None = None
        # Ray hands the stage this many sources per call; their pieces share whisper's batches.
        self.batch_size = config.rows_per_call

    @classmethod
    def models(cls, config: AsrConfig) -> list[str]:
        return [config.model]

    def setup(self) -> None:
        from voxhear.stages.audio.asr import Transcriber

        cfg = self.config
        self.transcriber = Transcriber(
            self.context.model_store,
            model_name=cfg.model,
            compute_type=cfg.compute_type,
            batch_size=cfg.batch_size,
            beam_size=cfg.beam_size,
            threads=cfg.threads,
            pad_s=cfg.pad_s,
            chunk_s=cfg.piece_s,
            align=cfg.align,
        )

    def process(self, row: SourceRecord) -> list[SourceRecord]:
        return self.process_batch([row])[0]

    def process_batch(self, rows: list[SourceRecord]) -> list[list[SourceRecord]]:
        from voxhear.stages.audio.asr import SpeechFile
        from voxhear.stages.audio.diarization import read_rttm

        if self.transcriber is None:
            self.setup()
        transcriber = self.transcriber
        assert transcriber is not None, "setup() loads the transcriber"
        started = time.perf_counter()
        # Read a piece at a time (16 kHz, resampled per piece otherwise): memory does not grow with the input.
        # The separator's own speech, as diarization reads it: the residue the stems get back
        # raised GRID's WER 0.198 -> 0.241 (README, "Real people").
        speeches = [SpeechFile(row.separator_speech_uri or row.audio_uri) for row in rows]
        turns = [read_rttm(row.rttm_uri) if row.rttm_uri else [] for row in rows]
        results = transcriber.transcribe_many(list(zip(speeches, turns)))
        # The batch's time is shared out by audio length (each row's real-time factor is the batch's).
        rtf = _rtf(started, sum(speech.duration for speech in speeches))
        for row, (words, _) in zip(rows, results):
            columns = {
                "word": [w.word for w in words],
                "start_s": [w.start for w in words],
                "end_s": [w.end for w in words],
                "speaker": [w.speaker for w in words],
                "probability": [w.probability for w in words],
            }
            table = pa.Table.from_pydict(columns, schema=WORDS_SCHEMA)
            path = self.context.source_work_dir(row.source_id) / "words.parquet"
            atomic_write_table(path, table)
            row.words_uri = str(path)
            row.n_words = len(words)
            row.asr_word_timing = transcriber.word_timing
            row.audio_rtf = {**row.audio_rtf, self.name: rtf}
        return [[row] for row in rows]


def _rtf(started: float, seconds: float) -> float:
    return round((time.perf_counter() - started) / seconds, 4) if seconds > 0 else 0.0
