"""The project vocabulary, measured: rare terms heard with and without it, decoys it must not write, and the
error rate over every clip.

    python bench/vocabulary.py                       # none, hotwords, hotwords-unguarded, prompt
    python bench/vocabulary.py --conditions none hotwords
    python bench/vocabulary.py --conditions prompt --term-clips   # only the clips with terms
    python bench/vocabulary.py --conditions none codebook --longforms   # also the dev long-forms

One vocabulary for the whole run, as a project has one: the rare terms of the corpus clips whose references
hold them (the rag_*, far_* clips and others), plus decoy terms said in no clip (微分几何, 肾小球, 挥发性物质,
八宝鸭, ...). Each clip is transcribed as `ohp run` does it (decode, silero-vad chunks, faster-whisper
base, guards), the hint built as `ohp run` builds it (the vocabulary, then the codebook's theme labels).

Conditions:
  none                 no hint: ohp as it was
  hotwords             the hint as faster-whisper hotwords, with the guard (what ohp run does)
  hotwords-main        as ohp had it before (main at 53fcc47): the hinted pass falling back to sampling as a
                       plain decode does, and the guard looking for whole hint terms only, not their pieces
  hotwords-unguarded   the same without the guard: what the guard saves
  prompt               the hint as faster-whisper's initial_prompt, with the guard
  codebook             a project without a vocabulary file: the codebook's theme labels alone, guarded
  metadata             a recording's interviewee and place alone (张长华, 东莞: said in no clip), guarded
  metadata-codebook    both (what a project without a vocabulary file gets for a described recording)

Reported per condition: term recall (terms of the clips written), decoys written (must be 0), pieces of
decoys written (a word of two or more characters of a decoy, jieba's, written more often than the reference
has it), other vocabulary terms written where the reference has none, CER over all clips (must not be worse
than none) and, with --longforms, over the Mandarin and dialect dev long-forms; the stretches of hinted decodes
left out (they failed Whisper's checks), the guard's plain decodes (and of those the ones only a piece of a term
asked for) and how many chunks kept the plain decode; the seconds spent (wall and CPU). The
metadata conditions count the interviewee and place as their decoys: they are said nowhere.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from collections import Counter
from contextlib import contextmanager, nullcontext
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
CORPUS = REPO.parent / "shared" / "corpus"
OUT = REPO / "bench" / "out"
CONDITIONS = (
    "none",
    "hotwords",
    "hotwords-main",
    "hotwords-unguarded",
    "prompt",
    "codebook",
    "metadata",
    "metadata-codebook",
)
DEFAULT_CONDITIONS = ("none", "hotwords", "hotwords-unguarded", "prompt")
LONGFORMS = ("longform_zh_dev", "longform_dialect_dev")  # in the corpus, each with its reference (.json)

# The rare words of the clips that hold them: names, places, technical terms (from MANIFEST.tsv's references).
TERMS = {
    "zh/k2-fsa_sherpa___static_fun-asr-nano-2025-12-30_rag_chemistry.wav": ["酯", "含氧酸盐"],
    "zh/k2-fsa_sherpa___static_fun-asr-nano-2025-12-30_rag_history.wav": ["钦点", "犹地亚", "希律王"],
    "zh/k2-fsa_sherpa___static_fun-asr-nano-2025-12-30_far_2.wav": ["渣男", "沈杜公路", "8号线"],
    "zh/k2-fsa_sherpa___static_fun-asr-nano-2025-12-30_far_3.wav": ["露营", "帐篷", "暖宝宝", "火锅食材"],
    "zh/PaddlePaddle_PaddleSpeech__demos_speech_server_16_audio.wav": ["广州", "北马", "心跳骤停"],
    "zh/modelscope_FunASR__funasr_runtime_csharp_AliParaformerAsr.Examples_speech_paraformer-large_asr_nat-zh-cn"
    "-16k-common-vocab8404-onnx_example_2.wav": ["英国脱欧", "产业链"],
    "zh/modelscope_FunASR__funasr_runtime_csharp_AliParaformerAsr.Examples_speech_paraformer-large_asr_nat-zh-cn"
    "-16k-common-vocab8404-onnx_example_0.wav": ["达摩院"],
    "zh/yeyupiaoling_MASR__dataset_test.wav": ["压岁钱", "压岁书"],
    "zh/FireRedTeam_FireRedASR__examples_wav_BAC009S0764W0121.wav": ["停滞"],
    "zh_dialect/k2-fsa_sherpa___static_sherpa-onnx-paraformer-zh-int8-2025-10-07_4.wav": ["四川话"],
    "zh_dialect/k2-fsa_sherpa___static_sherpa-onnx-paraformer-zh-int8-2025-10-07_5.wav": ["九霄云"],
    "zh_dialect/k2-fsa_sherpa___static_sherpa-onnx-paraformer-zh-int8-2025-10-07_8.wav": ["官场"],
}
# Said in no clip: a hint that writes one of these wrote what nobody said.
DECOYS = ["微分几何", "肾小球", "挥发性物质", "八宝鸭", "拉格朗日", "甲状腺", "量子纠缠", "红烧狮子头"]
# A recording's interviewee and place, as `ohp describe` gives them: said in no clip, so decoys too.
METADATA = ["张长华", "东莞"]


def clips() -> list[tuple[str, str]]:
    """(path in the corpus, reference) of every Chinese clip with a reference transcript: the corpus's own or
    its documentation's, or (the few clips with terms that have no other) a stronger recogniser's."""
    with open(CORPUS / "MANIFEST.tsv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    return [
        (row["file"], row["reference_transcript"])
        for row in rows
        if row["file"].startswith(("zh/", "zh_dialect/"))
        and row["transcript_type"] in ("exact", "doc_gt", "model")
        and row["reference_transcript"] not in ("", "-")
        and not row["reference_transcript"].startswith("see ")
        and (CORPUS / row["file"]).exists()
    ]


@contextmanager
def hint_as_prompt():
    """faster-whisper given the hint as its initial prompt instead of hotwords (only in this benchmark)."""
    from faster_whisper import WhisperModel

    transcribe = WhisperModel.transcribe

    def as_prompt(self, audio, **options):
        options["initial_prompt"] = options.pop("hotwords", None)
        return transcribe(self, audio, **options)

    WhisperModel.transcribe = as_prompt
    try:
        yield
    finally:
        WhisperModel.transcribe = transcribe


def longforms() -> list[tuple[str, str]]:
    """(path in the corpus, reference) of the Mandarin and dialect dev long-forms: their clips' texts joined."""
    return [
        (
            f"{name}.wav",
            "".join(s["text"] for s in json.loads((CORPUS / f"{name}.json").read_text("utf-8"))["segments"]),
        )
        for name in LONGFORMS
    ]


def pieces(term: str) -> list[str]:
    """The words of two or more characters jieba makes of a Chinese term, other than the term itself (量子 and
    纠缠 of 量子纠缠): what a hint may write half of."""
    import jieba

    return [w for w in jieba.lcut(term, HMM=False) if len(w) >= 2 and w != term]


@contextmanager
def as_on_main():
    """The hint as ohp had it before: the hinted pass falling back to sampling at every temperature with no check
    of its quality, and the guard looking for whole hint terms only."""
    from dataclasses import replace

    from pipeline.stages import vocabulary

    hinted_options, failed, pieces_found = vocabulary.hinted_options, vocabulary.failed, vocabulary.Hint.pieces_found
    vocabulary.hinted_options = lambda hint, options: replace(options, hint=hint.text)
    vocabulary.failed = lambda segment, options: []
    vocabulary.Hint.pieces_found = lambda self, text: []  # type: ignore[method-assign]
    try:
        yield
    finally:
        vocabulary.hinted_options, vocabulary.failed = hinted_options, failed
        vocabulary.Hint.pieces_found = pieces_found  # type: ignore[method-assign]


@contextmanager
def counting_plain_decodes(counts: Counter):
    """Counts the stretches of hinted decodes `left out` (they failed Whisper's checks), the guard's plain decodes
    (`checked`) and, of those, `checked for a piece` (the hinted text held a piece of a hint term, no whole one,
    and nothing was left out: what checking pieces costs, though a sparse text may be among them)."""
    from pipeline.stages import vocabulary

    failed, unsupported = vocabulary.failed, vocabulary.unsupported

    def counted_failed(segment, options):
        problems = failed(segment, options)
        counts["left out"] += bool(problems)
        return problems

    def counted_unsupported(hint, hinted, plain):
        text = "".join(s.text for s in hinted)
        counts["checked"] += 1
        counts["checked for a piece"] += not hint.found(text) and bool(hint.pieces_found(text))
        return unsupported(hint, hinted, plain)

    vocabulary.failed, vocabulary.unsupported = counted_failed, counted_unsupported
    try:
        yield
    finally:
        vocabulary.failed, vocabulary.unsupported = failed, unsupported


@contextmanager
def unguarded():
    """The hint without its guard: the hinted decode is always kept."""
    from pipeline.stages import vocabulary

    check = vocabulary.unsupported
    vocabulary.unsupported = lambda hint, hinted, plain: []
    try:
        yield
    finally:
        vocabulary.unsupported = check


def condition_hint(condition: str):
    """The hint a condition hands the recogniser, and the terms in it said nowhere (its decoys)."""
    from pipeline.stages.codebook import load_codebook
    from pipeline.stages.vocabulary import build_hint, codebook_terms

    codebook = codebook_terms(load_codebook())
    terms = [t for clip_terms in TERMS.values() for t in clip_terms]
    if condition == "none":
        return None, DECOYS
    if condition == "codebook":
        return build_hint(codebook), DECOYS
    if condition == "metadata":
        return build_hint(METADATA), METADATA
    if condition == "metadata-codebook":
        return build_hint(METADATA, codebook), METADATA
    # The decoys first: the hint keeps the first terms that fit, and a decoy left out would prove nothing.
    hint = build_hint(DECOYS + terms, codebook)
    assert hint is not None and all(d in hint.terms for d in DECOYS)
    return hint, DECOYS


def run(condition: str, chosen: list[tuple[str, str]]) -> dict:
    from asr import cer, normalise

    from pipeline.config import Config
    from pipeline.stages.audio import decode, probe
    from pipeline.stages.engines import load_engine
    from pipeline.stages.segment import segment
    from pipeline.stages.transcribe import TranscribeOptions, transcribe

    engine = load_engine("faster-whisper", "base", Config.load().home, "cpu")
    terms = [t for clip_terms in TERMS.values() for t in clip_terms]
    hint, decoys_of = condition_hint(condition)
    print(
        f"{condition}: the hint holds {len(hint.terms) if hint else 0} terms: {hint.text if hint else ''}", flush=True
    )
    options = TranscribeOptions(hint=hint)
    found, wanted, decoys, halves, stray = 0, 0, Counter(), Counter(), Counter()
    errors: Counter[str] = Counter()
    reference_chars: Counter[str] = Counter()
    guards: Counter[str] = Counter()
    per_clip = []
    started, cpu_started = time.perf_counter(), time.process_time()
    modes = {"prompt": hint_as_prompt, "hotwords-unguarded": unguarded, "hotwords-main": as_on_main}
    plain_decodes: Counter[str] = Counter()
    with modes.get(condition, nullcontext)(), counting_plain_decodes(plain_decodes):
        for path, reference in chosen:
            group = "longforms" if path.startswith("longform_") else "clips"
            samples = decode(probe(CORPUS / path)).samples
            transcript = transcribe(samples, segment(samples), engine, options)
            text = "".join(s.text for s in transcript.segments)
            hypothesis, truth = normalise(text, True), normalise(reference, True)
            errors[group] += round(cer(hypothesis, truth) * len(truth))
            reference_chars[group] += len(truth)
            guards.update(transcript.guards)
            heard = [t for t in TERMS.get(path, []) if normalise(t, True) in hypothesis]
            found += len(heard)
            wanted += len(TERMS.get(path, []))
            decoys.update(d for d in decoys_of if normalise(d, True) in hypothesis)
            for piece in {p for d in decoys_of for p in pieces(d)}:
                extra = hypothesis.count(normalise(piece, True)) - truth.count(normalise(piece, True))
                if extra > 0:
                    halves[piece] += extra
            stray.update(t for t in terms if normalise(t, True) in hypothesis and normalise(t, True) not in truth)
            per_clip.append({"clip": path, "text": text, "terms": heard, "cer": round(cer(hypothesis, truth), 4)})
            print(f"{condition:20} {Path(path).name[:50]:50} {text}", flush=True)
    return {
        "condition": condition,
        "term_recall": f"{found}/{wanted}",
        "decoys_written": sum(decoys.values()),
        "decoys": dict(decoys),
        "decoy_pieces_written": sum(halves.values()),
        "decoy_pieces": dict(halves),
        "stray_terms": dict(stray),
        "cer": round(errors["clips"] / max(1, reference_chars["clips"]), 4),
        "cer_longforms": round(errors["longforms"] / reference_chars["longforms"], 4)
        if reference_chars["longforms"]
        else None,
        "guard_redecodes": guards.get("hint", 0),
        "plain_decodes": dict(plain_decodes),
        "guards": dict(guards),
        "seconds": round(time.perf_counter() - started, 1),
        "cpu_seconds": round(time.process_time() - cpu_started, 1),
        "clips": per_clip,
    }


def row(result: dict) -> str:
    stray = sum(result["stray_terms"].values())
    cells = [result["condition"], result["term_recall"], result["decoys_written"], result["decoy_pieces_written"]]
    decodes = result["plain_decodes"]
    checks = f"{decodes.get('left out', 0)} / {decodes.get('checked', 0)} ({decodes.get('checked for a piece', 0)})"
    cells += [stray, result["cer"], result["cer_longforms"], checks, result["guard_redecodes"]]
    cells += [result["seconds"], result["cpu_seconds"]]
    return "| " + " | ".join(str(v) for v in cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--conditions", nargs="+", choices=CONDITIONS, default=list(DEFAULT_CONDITIONS))
    parser.add_argument("--term-clips", action="store_true", help="only the clips with terms (a quicker run)")
    parser.add_argument("--longforms", action="store_true", help="also the Mandarin and dialect dev long-forms")
    args = parser.parse_args()
    chosen = [(path, text) for path, text in clips() if path in TERMS or not args.term_clips]
    chosen += longforms() if args.longforms else []
    OUT.mkdir(exist_ok=True)
    results = []
    for condition in args.conditions:  # each condition's figures kept as soon as it is done
        results.append(run(condition, chosen))
        suffix = ("-term-clips" if args.term_clips else "") + ("-longforms" if args.longforms else "")
        name = f"vocabulary-{condition}{suffix}.json"
        (OUT / name).write_text(json.dumps(results[-1], ensure_ascii=False, indent=1))
        print(row(results[-1]), flush=True)
    print(f"\n{len(chosen)} clips, {sum(len(t) for t in TERMS.values())} terms, {len(DECOYS)} decoys")
    print(
        "| condition | term recall | decoys written | decoy pieces written | stray terms | CER, clips | CER, long-forms"
        " | stretches left out / plain decodes (for a piece) | plain kept | seconds | CPU seconds |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for result in results:
        print(row(result))


if __name__ == "__main__":
    main()
