"""Build a fourth, weaker test recording for the doubt rule: the corpus's Mandarin clips whose references are
a stronger recogniser's output (MANIFEST.tsv `model`), none of them in the dev long-forms.

    python bench/make_longform_zh_model.py      # writes bench/out/longform_zh_model.wav (+ its .json)

Made as bench/make_longform_en.py makes the English one (normalised clips, the Mandarin long-form's room noise
between them, one long gap in the middle, a fixed seed); the reference, `bench/data/longform_zh_model.json`, is
kept in the repository. Its texts are not a person's: they are Paraformer's, SenseVoice's or Kimi-Audio's
output as their projects publish it, so where that recogniser was wrong ohp is counted wrong when it is right
(MANIFEST's notes name a few: 就 for 救, 配市 for 上市). The 70 s lecture clip's reference is a pseudo-reference
compiled from public outputs (its sidecar file): bracketed alternatives are dropped and the first kept.
Left out: the MP3 copy of example_0 (the same speech) and the clips with no Mandarin reference.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

import make_longform_en as longform  # noqa: E402

REFERENCE = REPO / "bench" / "data" / "longform_zh_model.json"
OUT = REPO / "bench" / "out" / "longform_zh_model.wav"
_PARAFORMER = "zh/modelscope_FunASR__funasr_runtime_csharp_AliParaformerAsr.Examples_speech_paraformer-large_asr_nat-zh-cn-16k-common-vocab8404-onnx_example_"  # noqa: E501
LECTURE = "zh/modelscope_FunASR__funasr_runtime_csharp_AliFsmnVad.Examples_speech_fsmn_vad_zh-cn-16k-common-onnx_example_0.wav"  # noqa: E501

CLIPS: tuple[tuple[str, int | None, float, float | None, str | None], ...] = (
    (
        "zh/MoonshotAI_Kimi-Audio__test_audios_asr_example.wav",
        None,
        0.0,
        None,
        "这并不是告别，这是一个篇章的结束，也是新篇章的开始。",
    ),
    (
        f"{_PARAFORMER}1.wav",
        None,
        0.0,
        None,
        "正是因为存在绝对正义所以我们接受现实的相对正义但是不要因为现实的相对正义我们就认为这个世界没有正义因为如果当你认为这个世界没有正义",
    ),
    (
        "zh/PaddlePaddle_PaddleSpeech__demos_speech_server_16_audio.wav",
        None,
        0.0,
        None,
        "广州医生跑北马中断比赛就心跳骤停者",
    ),
    (
        "zh/RapidAI_RapidASR__python_test_wavs_0478_00017.wav",
        None,
        0.0,
        None,
        "呃说不配合就不配合的好以上的话呢我们摘取八九十三条因为这三条的话呢比较典型啊一些数字比较明确尤其是时间那么我们要投资者就是了解这一点啊不要轻信这个市场可以快速回来啊这些配市公司啊后期又利好了可以快速快速攻能包括像前一段时间啊有些媒体在二三月份的时候",
    ),
    ("zh/k2-fsa_sherpa___static_sense-voice_zh.wav", None, 0.0, None, "开放时间早上九点至下午五点"),
    (LECTURE, None, 0.0, None, None),
    (f"{_PARAFORMER}0.wav", None, 0.0, None, "欢迎大家来体验达摩院推出的语音识别模型"),
    (f"{_PARAFORMER}2.wav", None, 0.0, None, "非常的方便但是现在不同啊英国脱欧欧盟内部完善的产业链的红利人"),
    (
        f"{_PARAFORMER}3.wav",
        None,
        0.0,
        None,
        "he must be home now for the light is on他一定在家因为灯亮着就是有一种推理或者解释的那种感觉",
    ),
    (
        "zh/yeyupiaoling_MASR__dataset_test.wav",
        None,
        0.0,
        None,
        "近几年不但我用书给女儿压岁也劝说亲朋不要给女儿压岁钱而改送压岁书",
    ),
)


def lecture_text(name: str, _start: float) -> str:
    """The lecture clip's pseudo-reference: its speakers' lines, without the bracketed alternatives."""
    sidecar = longform.CORPUS / name.replace(".wav", ".asr_pseudo_ref.txt")
    lines = [line for line in sidecar.read_text(encoding="utf-8").splitlines() if line.startswith("Speaker_")]
    return "".join(re.sub(r"\[[^\]]*\]", "", line.split(":", 1)[1]).strip() for line in lines)


if __name__ == "__main__":
    longform.main(__doc__, OUT, REFERENCE, clips=CLIPS, language="zh", text_of=lecture_text)
