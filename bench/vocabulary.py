"""The project vocabulary, measured: rare terms heard with and without it, decoys it must not write, and the
error rate over every clip.

    python bench/vocabulary.py                       # none, hotwords, hotwords-unguarded, prompt
    python bench/vocabulary.py --conditions none hotwords
    python bench/vocabulary.py --conditions prompt --term-clips   # only the clips with terms

One vocabulary for the whole run, as a project has one: the rare terms of the corpus clips whose references
hold them (the rag_*, far_* clips and others), plus decoy terms said in no clip (微分几何, 肾小球, 挥发性物质,
八宝鸭, ...). Each clip is transcribed as `ohp run` does it (decode, silero-vad chunks, faster-whisper
base, guards), the hint built as `ohp run` builds it (the vocabulary, then the codebook's theme labels).

Conditions:
  none                 no hint: ohp as it was
  hotwords             the hint as faster-whisper hotwords, with the guard (what ohp run does)
  hotwords-unguarded   the same without the guard: what the guard saves
  prompt               the hint as faster-whisper's initial_prompt, with the guard

Reported per condition: term recall (terms of the clips written), decoys written (must be 0), other
vocabulary terms written where the reference has none, CER over all clips (must not be worse than none),
how many chunks the guard decoded again without the hint, and the seconds spent.
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
CONDITIONS = ("none", "hotwords", "hotwords-unguarded", "prompt")

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


def run(condition: str, chosen: list[tuple[str, str]]) -> dict:
    from asr import cer, normalise

    from pipeline.config import Config
    from pipeline.stages.audio import decode, probe
    from pipeline.stages.codebook import load_codebook
    from pipeline.stages.engines import load_engine
    from pipeline.stages.segment import segment
    from pipeline.stages.transcribe import TranscribeOptions, transcribe
    from pipeline.stages.vocabulary import build_hint, codebook_terms

    engine = load_engine("faster-whisper", "base", Config.load().home, "cpu")
    terms = [t for clip_terms in TERMS.values() for t in clip_terms]
    # The decoys first: the hint keeps the first terms that fit, and a decoy left out would prove nothing.
    hint = build_hint(DECOYS + terms, codebook_terms(load_codebook()))
    assert hint is not None and all(d in hint.terms for d in DECOYS)
    print(f"{condition}: the hint holds {len(hint.terms)} terms: {hint.text}", flush=True)
    options = TranscribeOptions(hint=None if condition == "none" else hint)
    found, wanted, decoys, stray = 0, 0, Counter(), Counter()
    errors = reference_chars = 0
    guards: Counter[str] = Counter()
    per_clip = []
    started = time.perf_counter()
    modes = {"prompt": hint_as_prompt, "hotwords-unguarded": unguarded}
    with modes.get(condition, nullcontext)():
        for path, reference in chosen:
            samples = decode(probe(CORPUS / path)).samples
            transcript = transcribe(samples, segment(samples), engine, options)
            text = "".join(s.text for s in transcript.segments)
            hypothesis, truth = normalise(text, True), normalise(reference, True)
            errors += round(cer(hypothesis, truth) * len(truth))
            reference_chars += len(truth)
            guards.update(transcript.guards)
            heard = [t for t in TERMS.get(path, []) if normalise(t, True) in hypothesis]
            found += len(heard)
            wanted += len(TERMS.get(path, []))
            decoys.update(d for d in DECOYS if normalise(d, True) in hypothesis)
            stray.update(t for t in terms if normalise(t, True) in hypothesis and normalise(t, True) not in truth)
            per_clip.append({"clip": path, "text": text, "terms": heard, "cer": round(cer(hypothesis, truth), 4)})
            print(f"{condition:20} {Path(path).name[:50]:50} {text}", flush=True)
    return {
        "condition": condition,
        "term_recall": f"{found}/{wanted}",
        "decoys_written": sum(decoys.values()),
        "decoys": dict(decoys),
        "stray_terms": dict(stray),
        "cer": round(errors / max(1, reference_chars), 4),
        "guard_redecodes": guards.get("hint", 0),
        "guards": dict(guards),
        "seconds": round(time.perf_counter() - started, 1),
        "clips": per_clip,
    }


def row(result: dict) -> str:
    stray = sum(result["stray_terms"].values())
    cells = [result["condition"], result["term_recall"], result["decoys_written"], stray, result["cer"]]
    cells += [result["guard_redecodes"], result["seconds"]]
    return "| " + " | ".join(str(v) for v in cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--conditions", nargs="+", choices=CONDITIONS, default=list(CONDITIONS))
    parser.add_argument("--term-clips", action="store_true", help="only the clips with terms (a quicker run)")
    args = parser.parse_args()
    chosen = [(path, text) for path, text in clips() if path in TERMS or not args.term_clips]
    OUT.mkdir(exist_ok=True)
    results = []
    for condition in args.conditions:  # each condition's figures kept as soon as it is done
        results.append(run(condition, chosen))
        name = f"vocabulary-{condition}{'-term-clips' if args.term_clips else ''}.json"
        (OUT / name).write_text(json.dumps(results[-1], ensure_ascii=False, indent=1))
        print(row(results[-1]), flush=True)
    print(f"\n{len(chosen)} clips, {sum(len(t) for t in TERMS.values())} terms, {len(DECOYS)} decoys")
    print("| condition | term recall | decoys written | stray terms | CER | guard redecodes | seconds |")
    print("|---|---|---|---|---|---|---|")
    for result in results:
        print(row(result))


if __name__ == "__main__":
    main()
