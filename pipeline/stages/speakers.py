"""Who is speaking: speaker turns from voice embeddings, segments split where the voice changes,
interviewer and interviewee, and enrolled voices recognised.

Diarization embeds overlapping 1.6 s windows of the speech regions with resemblyzer's voice encoder,
clusters them by spectral clustering (the number of speakers, when not given, at the largest eigengap),
refines the clusters into centroids, scores every 0.1 s frame of speech against the centroids through
the windows that cover it, and smooths the frame labels into turns. Settings were tuned on the corpus
recordings with reference turns (bench/speakers.py)."""

from __future__ import annotations

import itertools
import logging
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, replace
from functools import cache

import numpy as np

from pipeline.errors import InvalidInputError
from pipeline.records import Segment, SpeakerTurn, SpeechRegion, Word
from pipeline.script import CHINESE_LANGUAGES
from pipeline.stages.audio import SAMPLE_RATE
from pipeline.utils import one_blas_thread, overlap, usable_cores

log = logging.getLogger(__name__)

# When the number of speakers is estimated, at most this many: more voices in one interview are rare.
MAX_ESTIMATED_SPEAKERS = 8


@dataclass(frozen=True)
class DiarizeOptions:
    window: float = 1.6  # s: the encoder's own partial-utterance length (160 mel frames)
    hop: float = 0.4  # s between windows
    # The affinity between n windows keeps each window's neighbours * sqrt(n) nearest (the usual
    # k ~ sqrt(n) of nearest-neighbour graphs) or neighbours_share * n, whichever is more (on a
    # 60-minute call sqrt(n) alone left the graph too local: DER 38% against 3.7%). A speaker with fewer
    # windows than that blurs into the others: about 5% of the speech in a long recording.
    neighbours: float = 1.5
    neighbours_share: float = 0.05
    # The number of speakers is estimated on at most this many evenly spaced windows: the size of the
    # recordings it was tuned on (30-170 windows), where a clear eigengap needs no more neighbours than a
    # speaker with a tenth of the speech has windows.
    max_estimate: int = 400
    min_split: int = 30  # a cluster of fewer windows (12 s of speech at the default hop) is not split again
    refine: int = 3  # rounds of moving windows to the nearest cluster centroid
    max_windows: int = 3000  # windows clustered at once (dense n x n affinity); more are sampled evenly
    frame: float = 0.1  # s: resolution of the turns
    smooth: float = 1.0  # s: scores averaged over this span before a frame takes its best speaker
    min_turn: float = 1.0  # s: a shorter turn inside continuous speech joins a neighbour
    merge_gap: float = 0.5  # s: turns of one speaker separated by less are one turn
    batch: int = 128  # windows through the encoder at once


@cache
def load_encoder(device: str):
    """resemblyzer's voice encoder, loaded once per device in a process."""
    from resemblyzer import VoiceEncoder

    from pipeline.config import torch_device

    device = torch_device(device)
    log.info("loading the resemblyzer voice encoder on %s", device)
    return VoiceEncoder(device, verbose=False)


_MEL_STEP = 0.01  # s: resemblyzer's mel frame step (10 ms)


def _mel(samples: np.ndarray) -> np.ndarray:
    from resemblyzer.audio import normalize_volume, wav_to_mel_spectrogram

    # The encoder was trained on utterances normalised to -30 dBFS, on a linear (not log) mel
    # spectrogram: loudness changes its input, so each region is brought to that level.
    if not np.any(samples):
        return wav_to_mel_spectrogram(samples)
    return wav_to_mel_spectrogram(normalize_volume(samples, -30))


def _embed(mels: list[np.ndarray], device: str, threads: int | None) -> np.ndarray:
    """Embeddings (L2-normed) of mel windows; windows of one length go through the encoder together."""
    import torch

    encoder = load_encoder(device)
    # torch's threads are the process's: set on each use, so a use with other threads than the first's has them.
    torch.set_num_threads(threads or usable_cores())
    out = np.empty((len(mels), 256), dtype=np.float32)
    by_length: dict[int, list[int]] = defaultdict(list)
    for i, mel in enumerate(mels):
        by_length[len(mel)].append(i)
    with torch.no_grad():
        for indices in by_length.values():
            batch = torch.from_numpy(np.stack([mels[i] for i in indices])).to(encoder.device)
            out[indices] = encoder(batch).cpu().numpy()
    return out


def window_embeddings(
    samples: np.ndarray,
    regions: list[SpeechRegion],
    options: DiarizeOptions = DiarizeOptions(),
    device: str = "auto",
    threads: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Windows over the speech regions: their (start, end) times, shape (n, 2), and embeddings (n, 256),
    computed on `device` (auto, cpu or cuda) with `threads` CPU threads (None: every core the process may use).

    Windows stay inside a region; a region shorter than a window is one window of its own length.
    Only one region's audio is copied at a time.
    """
    width, step = round(options.window / _MEL_STEP), round(options.hop / _MEL_STEP)
    times: list[tuple[float, float]] = []
    embeddings: list[np.ndarray] = []
    pending: list[np.ndarray] = []
    for region in regions:
        first = int(region.start * SAMPLE_RATE)
        mel = _mel(samples[first : int(region.end * SAMPLE_RATE)])
        n = len(mel)
        if n == 0:
            continue
        starts = list(range(0, max(1, n - width + 1), step))
        if starts[-1] + width < n:  # the last window ends with the region
            starts.append(n - width)
        for s in starts:
            pending.append(mel[s : s + width])
            begin = first / SAMPLE_RATE + s * _MEL_STEP
            times.append((begin, min(region.end, begin + min(width, n) * _MEL_STEP)))
        if len(pending) >= options.batch:
            embeddings.append(_embed(pending, device, threads))
            pending = []
    if pending:
        embeddings.append(_embed(pending, device, threads))
    if not times:
        return np.empty((0, 2)), np.empty((0, 256), dtype=np.float32)
    return np.array(times), np.concatenate(embeddings)


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-9)


def affinity(embeddings: np.ndarray, keep: int) -> np.ndarray:
    """Cosine affinity refined as in Wang et al. 2018 (speaker diarization with LSTM): each row keeps
    its `keep` nearest windows (the rest shrunk 100-fold), symmetrised, diffused (A A^T) so windows with
    the same neighbours count as close, and scaled row by row."""
    s = np.maximum(embeddings @ embeddings.T, 0.0)
    a = np.where(s >= np.sort(s, axis=1)[:, [-keep]], s, 0.01 * s)
    a = np.maximum(a, a.T)
    a = a @ a.T
    a /= a.max(axis=1, keepdims=True)
    return (a + a.T) / 2


def _spectral(points: np.ndarray, k: int | None, max_k: int, options: DiarizeOptions) -> list[np.ndarray]:
    """Indices of each cluster of points: spectral clustering (Ng, Jordan and Weiss) on the refined
    affinity; k None is taken at the largest gap between the normalised Laplacian's smallest eigenvalues
    (so 1 when there is no clear cut)."""
    from scipy.linalg import eigh
    from sklearn.cluster import KMeans

    n = len(points)
    if n < 3 or k == 1:
        return [np.arange(n)]
    a = affinity(points, max(2, min(n, round(max(options.neighbours * np.sqrt(n), options.neighbours_share * n)))))
    degree = a.sum(axis=1)
    laplacian = np.eye(n) - a / np.sqrt(np.outer(degree, degree))
    values, vectors = eigh(laplacian, subset_by_index=[0, min(k or max_k, n - 1)])
    k = min(k, n) if k else int(np.argmax(np.diff(values))) + 1
    if k == 1:
        return [np.arange(n)]
    labels = KMeans(k, n_init=10, random_state=0).fit_predict(_normalise(vectors[:, :k]))
    return [np.flatnonzero(labels == c) for c in range(k) if np.any(labels == c)]


def _split(points: np.ndarray, max_k: int, options: DiarizeOptions) -> list[np.ndarray]:
    """Estimated clusters, each cluster split again while the eigengap says it holds more than one
    voice: the largest gap sees the coarsest division (say, two rooms or phone lines) and would stop there."""
    parts = _spectral(points, None, max_k, options)
    if len(parts) == 1:
        return parts
    found: list[np.ndarray] = []
    for part in parts:
        inner = _split(points[part], max_k, options) if len(part) >= options.min_split else [np.arange(len(part))]
        found.extend(part[i] for i in inner)
    return found


def cluster(
    embeddings: np.ndarray, n_speakers: int | None, max_speakers: int, options: DiarizeOptions = DiarizeOptions()
) -> np.ndarray:
    """Speaker centroids (k, 256), L2-normed: spectral clustering of the windows into k speakers (given,
    or estimated and at most max_speakers), then a few rounds of moving every window to its nearest centroid."""
    if not n_speakers:
        estimate = embeddings[:: -(-len(embeddings) // options.max_estimate)]
        n_speakers = min(len(_split(estimate, max_speakers, options)), max_speakers)
    # Evenly spaced windows stand for a long recording (the rest join the nearest centroid below).
    # Averaging runs of consecutive windows instead mixes the voices of short turns, and did worse.
    points = embeddings[:: -(-len(embeddings) // options.max_windows)]
    parts = _spectral(points, n_speakers, max_speakers, options)
    centroids = _normalise(np.stack([points[part].mean(axis=0) for part in parts]))
    for _ in range(options.refine):
        nearest = (embeddings @ centroids.T).argmax(axis=1)
        kept = [c for c in range(len(centroids)) if np.any(nearest == c)]  # a centroid nobody is nearest to goes
        centroids = _normalise(np.stack([embeddings[nearest == c].mean(axis=0) for c in kept]))
    return centroids


def _runs(labels: np.ndarray) -> list[list[int]]:
    """[label, first, end) for each run of equal labels."""
    edges = np.flatnonzero(np.diff(labels)) + 1
    bounds = [0, *edges.tolist(), len(labels)]
    return [[int(labels[a]), a, b] for a, b in itertools.pairwise(bounds)]


def _region_labels(scores: np.ndarray, min_frames: int) -> list[list[int]]:
    """Runs of best-scoring speaker over a region's frames, no run shorter than min_frames unless it is
    the whole region: the shortest joins the neighbour whose speaker scores better over it."""
    runs = _runs(scores.argmax(axis=1))
    while len(runs) > 1:
        i = min(range(len(runs)), key=lambda j: runs[j][2] - runs[j][1])
        _, a, b = runs[i]
        if b - a >= min_frames:
            break
        neighbours = [runs[j][0] for j in (i - 1, i + 1) if 0 <= j < len(runs)]
        runs[i][0] = max(neighbours, key=lambda c: scores[a:b, c].sum())
        merged: list[list[int]] = []
        for run in runs:
            if merged and merged[-1][0] == run[0]:
                merged[-1][2] = run[2]
            else:
                merged.append(run)
        runs = merged
    return runs


def label_frames(
    regions: list[SpeechRegion], times: np.ndarray, similarities: np.ndarray, options: DiarizeOptions = DiarizeOptions()
) -> list[tuple[float, float, int]]:
    """(start, end, cluster) stretches of speech: each frame scores each speaker by the mean similarity
    of the windows covering it, averaged over `smooth` seconds; runs shorter than min_turn are absorbed."""
    from scipy.ndimage import uniform_filter1d

    stretches: list[tuple[float, float, int]] = []
    width = max(1, round(options.smooth / options.frame))
    min_frames = round(options.min_turn / options.frame)
    for region in regions:
        first, last = np.searchsorted(times[:, 0], [region.start - 1e-6, region.end], side="left")
        if first == last:
            continue
        n = max(1, int(np.ceil(region.duration / options.frame - 1e-6)))
        centres = region.start + (np.arange(n) + 0.5) * options.frame
        window_times, window_scores = times[first:last], similarities[first:last]
        cover = (window_times[:, 0][None, :] <= centres[:, None]) & (centres[:, None] < window_times[:, 1][None, :])
        # A frame no window covers (a window's end rounded short of the region's) takes the nearest window.
        nearest = np.abs(window_times.mean(axis=1)[None, :] - centres[:, None]).argmin(axis=1)
        cover[np.arange(n), nearest] |= ~cover.any(axis=1)
        scores = (cover @ window_scores) / cover.sum(axis=1, keepdims=True)
        scores = uniform_filter1d(scores, width, axis=0, mode="nearest")
        for label, a, b in _region_labels(scores, min_frames):
            stretches.append(
                (region.start + a * options.frame, min(region.end, region.start + b * options.frame), label)
            )
    return stretches


def make_turns(stretches: list[tuple[float, float, int]], merge_gap: float) -> list[SpeakerTurn]:
    """Turns from labelled stretches: one speaker's stretches closer than merge_gap joined, speakers
    named S1, S2, ... in order of first appearance."""
    merged: list[list] = []
    for start, end, label in stretches:
        if merged and merged[-1][2] == label and start - merged[-1][1] < merge_gap:
            merged[-1][1] = end
        else:
            merged.append([start, end, label])
    names: dict[int, str] = {}
    for _, _, label in merged:
        names.setdefault(label, f"S{len(names) + 1}")
    return [SpeakerTurn(start, end, names[label]) for start, end, label in merged]


def diarize(
    samples: np.ndarray,
    regions: list[SpeechRegion],
    n_speakers: int | None = None,
    max_speakers: int = MAX_ESTIMATED_SPEAKERS,
    options: DiarizeOptions = DiarizeOptions(),
    device: str = "auto",
    threads: int | None = None,
) -> list[SpeakerTurn]:
    """Speaker turns over the speech regions. n_speakers None: estimated, at most max_speakers."""
    one_blas_thread()  # the same turns whether or not a recogniser loaded first, or decodes beside
    times, embeddings = window_embeddings(samples, regions, options, device, threads)
    if not len(times):
        return []
    centroids = cluster(embeddings, n_speakers, max_speakers, options)
    return make_turns(label_frames(regions, times, embeddings @ centroids.T, options), options.merge_gap)


# --- segments and words -------------------------------------------------------------------------------

# Languages written without spaces between words: their words are joined as they are.
UNSPACED_LANGUAGES = CHINESE_LANGUAGES | {"ja", "th", "lo", "km", "my", "bo"}


def _overlaps(start: float, end: float, turns: list[SpeakerTurn]) -> dict[str, float]:
    found: defaultdict[str, float] = defaultdict(float)
    for turn in turns:
        shared = overlap(start, end, turn.start, turn.end)
        if shared > 0:
            found[turn.speaker] += shared
    return found


def speaker_at(start: float, end: float, turns: list[SpeakerTurn]) -> str | None:
    """The speaker of [start, end]: the one whose turns overlap it most, else the nearest turn's."""
    if not turns:
        return None
    found = _overlaps(start, end, turns)
    if found:
        return max(found, key=found.__getitem__)
    return min(turns, key=lambda t: max(t.start - end, start - t.end)).speaker


def _part(segment: Segment, words: list[Word], speaker: str | None, original: str) -> Segment:
    separator = "" if segment.language in UNSPACED_LANGUAGES else " "
    return replace(
        segment,
        start=words[0].start,
        end=words[-1].end,
        text=separator.join(w.text for w in words),
        original_text=original,
        words=words,
        speaker=speaker,
        id=None,
    )


def split_segment(segment: Segment, turns: list[SpeakerTurn]) -> list[Segment]:
    """The segment with its speaker, or one part per change of speaker between its words.

    A part's text is the concatenation of its words. original_text is cut at the same character
    offsets when it is as long as the text the words make (the script policy keeps lengths), else it
    stays whole on the first part and the others get none. The first part keeps the segment's id; the
    others have none (they are new)."""
    if not segment.words:
        return [replace(segment, speaker=speaker_at(segment.start, segment.end, turns))]
    speakers = [speaker_at(w.start, w.end, turns) for w in segment.words]
    runs: list[tuple[str | None, list[Word]]] = []
    for word, speaker in zip(segment.words, speakers, strict=True):
        if runs and runs[-1][0] == speaker:
            runs[-1][1].append(word)
        else:
            runs.append((speaker, [word]))
    if len(runs) == 1:
        return [replace(segment, speaker=speakers[0])]
    separator = "" if segment.language in UNSPACED_LANGUAGES else " "
    whole = separator.join(w.text for w in segment.words)
    cuts, offset = [], 0
    for _, words in runs:
        length = len(separator.join(w.text for w in words))
        cuts.append((offset, offset + length))
        offset += length + len(separator)
    if len(segment.original_text) == len(whole):
        originals = [segment.original_text[a:b] for a, b in cuts]
    else:
        originals = [segment.original_text] + [""] * (len(runs) - 1)
    parts = [
        _part(segment, words, speaker, original) for (speaker, words), original in zip(runs, originals, strict=True)
    ]
    parts[0].id, parts[0].start, parts[-1].end = segment.id, segment.start, segment.end
    return parts


# --- roles --------------------------------------------------------------------------------------------

_SENTENCE = re.compile(r"[^。！？!?.…]+[。！？!?.…]*")
_ZH_QUESTION = re.compile(r"什么|怎么|为什么|为啥|多少|多大|多久|几|哪|谁|[吗呢吧]\W*$")
_EN_QUESTION = re.compile(
    r"^\W*(what|why|how|when|where|who|whom|whose|which"
    r"|(do|does|did|is|are|was|were|can|could|would|will|have|has|had|should)"
    r" (you|he|she|it|they|we|i|there|that|this|your|his|her|their))\b",
    re.IGNORECASE,
)


def is_question(sentence: str) -> bool:
    """A question by its punctuation, Chinese question words and particles, or English wh-words and
    inverted auxiliaries."""
    sentence = sentence.strip()
    return sentence.endswith(("?", "？")) or bool(_ZH_QUESTION.search(sentence) or _EN_QUESTION.search(sentence))


def label_roles(segments: list[Segment], turns: list[SpeakerTurn]) -> dict[str, str]:
    """Speaker -> "interviewer", "interviewee" or "other".

    The interviewee talks most and asks least: the speaker with the largest share of speaking time
    weighted by the share of their sentences that are not questions. The interviewer asks: of the
    others, the one with the largest share of questions among their sentences (then shorter turns,
    then more time). Anyone else is "other" unless questions are most of what they say."""
    time: defaultdict[str, float] = defaultdict(float)
    count: Counter[str] = Counter()
    for turn in turns:
        time[turn.speaker] += turn.end - turn.start
        count[turn.speaker] += 1
    sentences: Counter[str] = Counter()
    questions: Counter[str] = Counter()
    for segment in segments:
        if segment.speaker is None:
            continue
        for sentence in _SENTENCE.findall(segment.text):
            sentences[segment.speaker] += 1
            questions[segment.speaker] += is_question(sentence)
    speakers = list(time)
    if not speakers:
        return {}
    rate = {s: questions[s] / sentences[s] if sentences[s] else 0.0 for s in speakers}
    total = sum(time.values())
    interviewee = max(speakers, key=lambda s: time[s] / total * (1 - rate[s]))
    roles = {s: "other" for s in speakers}
    roles[interviewee] = "interviewee"
    others = [s for s in speakers if s != interviewee]
    if others:
        interviewer = max(others, key=lambda s: (rate[s], -time[s] / count[s], time[s]))
        roles[interviewer] = "interviewer"
        for s in others:
            if rate[s] > 0.5:
                roles[s] = "interviewer"
    return roles


# --- enrolled voices ----------------------------------------------------------------------------------


def speaker_embeddings(
    samples: np.ndarray,
    turns: list[SpeakerTurn],
    options: DiarizeOptions = DiarizeOptions(),
    device: str = "auto",
    threads: int | None = None,
) -> dict[str, np.ndarray]:
    """Each speaker's voice: the normalised mean of the window embeddings over their turns."""
    by_speaker: dict[str, list[SpeechRegion]] = defaultdict(list)
    for turn in turns:
        by_speaker[turn.speaker].append(SpeechRegion(turn.start, turn.end))
    voices = {}
    for speaker, regions in by_speaker.items():
        _, embeddings = window_embeddings(samples, regions, options, device, threads)
        if len(embeddings):
            voices[speaker] = _normalise(embeddings.mean(axis=0))
    return voices


def voice_profile(samples_list: list[np.ndarray], device: str = "auto") -> np.ndarray:
    """An enrolled voice from recordings of it: the normalised mean of each recording's normalised
    embedding (over its speech regions, as diarization sees it)."""
    from pipeline.stages.segment import speech_regions

    voices = []
    for samples in samples_list:
        regions = speech_regions(samples, device=device)
        _, embeddings = window_embeddings(samples, regions, device=device)
        if len(embeddings):
            voices.append(_normalise(embeddings.mean(axis=0)))
    if not voices:
        raise InvalidInputError("no speech in the enrollment recordings")
    return _normalise(np.mean(voices, axis=0))


# Cosine similarity above which a speaker is an enrolled voice. On the corpus (bench/speakers.py
# --profiles) the same person scored 0.854-0.936 (profile from another part of the recording or another
# recording), other people at most 0.807 (the other speaker of the same phone call; other recordings'
# voices at most 0.67).
MATCH_THRESHOLD = 0.83


def match_profiles(
    samples: np.ndarray,
    turns: list[SpeakerTurn],
    profiles: dict[str, np.ndarray],
    threshold: float = MATCH_THRESHOLD,
    device: str = "auto",
    threads: int | None = None,
) -> dict[str, str]:
    """Speaker label -> enrolled name, where the speaker's voice is more similar to the profile than
    threshold (cosine). A name goes to at most one speaker, the most similar."""
    if not profiles:
        return {}
    one_blas_thread()
    names = list(profiles)
    matrix = _normalise(np.stack([profiles[n] for n in names]))
    candidates: list[tuple[float, str, str]] = []
    for speaker, voice in speaker_embeddings(samples, turns, device=device, threads=threads).items():
        similarities = matrix @ voice
        candidates.extend(
            (float(s), speaker, name) for s, name in zip(similarities, names, strict=True) if s > threshold
        )
    matched: dict[str, str] = {}
    for _, speaker, name in sorted(candidates, reverse=True):
        if speaker not in matched and name not in matched.values():
            matched[speaker] = name
    return matched
