"""A fixed, seeded set of varied English sentences for the sentence-embedding entry.

Four sources, all offline: a hand-written list below, prose sentences from the
dataset descriptions that scikit-learn ships (sklearn/datasets/descr/*.rst),
the first sentences of numpy's function docstrings, and sentences from small
templates over fixed word lists (to fill up to the count asked). `sentences(seed, n)`
mixes them in a seeded order; the same seed and numpy and scikit-learn versions
give the same list.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

HANDWRITTEN = [
    "The train to the coast was delayed by almost an hour this morning.",
    "She poured the coffee slowly and watched the steam curl over the cup.",
    "Our quarterly revenue grew by twelve percent, mostly from new customers abroad.",
    "Please remember to lock the back door before you leave the office.",
    "The museum reopened after a long renovation of its east wing.",
    "How many kilometres is it from the station to the old harbour?",
    "A sudden storm knocked out the power across half of the city.",
    "The recipe calls for two cups of flour, a pinch of salt and cold butter.",
    "He finally fixed the bug that had crashed the server every Sunday night.",
    "Children were playing football in the park until the street lights came on.",
    "The committee postponed its decision until the next meeting in March.",
    "I would like to book a table for four people at seven o'clock.",
    "The new vaccine reduced hospital admissions among older patients.",
    "Glaciers in the region have lost a third of their mass since 1980.",
    "Can you send me the slides from yesterday's presentation?",
    "The orchestra rehearsed the second movement until late in the evening.",
    "Traffic on the bridge is heavy because of the marathon.",
    "My grandmother grows tomatoes, beans and three kinds of basil on her balcony.",
    "The startup raised forty million dollars to build cheaper batteries.",
    "A small earthquake shook the island, but nobody was hurt.",
    "The library will extend its opening hours during the exam period.",
    "He apologised for the misunderstanding and offered to pay for the damage.",
    "The telescope captured a detailed image of a distant spiral galaxy.",
    "Prices at the farmers' market went up after the dry summer.",
    "Remember to back up your files before installing the update.",
    "The hikers reached the summit just before the clouds rolled in.",
    "The court ruled that the contract had been signed under pressure.",
    "Our cat refuses to eat anything except one brand of fish.",
    "The bakery on the corner sells out of croissants by nine.",
    "Researchers trained the model on millions of labelled images.",
    "Is there a pharmacy open on Sunday near the central square?",
    "The airline cancelled dozens of flights because of the strike.",
    "She learned to play the violin at the age of forty.",
    "The river flooded the lower fields after a week of heavy rain.",
    "Unemployment fell to its lowest level in two decades.",
    "The referee showed a red card after a dangerous tackle.",
    "We spent the weekend painting the kitchen a pale shade of green.",
    "The database query was slow because the table had no index.",
    "Volunteers planted more than five hundred trees along the highway.",
    "The novel follows three generations of a family of fishermen.",
    "Turn left at the second traffic light and the hotel is on your right.",
    "The factory will switch to solar power by the end of next year.",
    "His speech was short, funny and surprisingly moving.",
    "The price of the laptop dropped sharply after the new model came out.",
    "A quiet neighbourhood can become noisy when a festival is in town.",
    "The doctor recommended more sleep and less screen time.",
    "Scientists discovered a new species of frog in the rainforest.",
    "The meeting has been moved to the small conference room upstairs.",
    "I can't find my keys anywhere; did you see them on the table?",
    "The city council approved a plan to build more bicycle lanes.",
    "Fresh snow closed the mountain pass for the rest of the week.",
    "The chef added a little lemon zest to brighten the sauce.",
    "The software update improved battery life on older phones.",
    "Fans waited outside the stadium for hours to see the team.",
    "The exhibition explores how maps shaped the way people saw the world.",
    "Interest rates are expected to stay unchanged this quarter.",
    "She wrote the report in one night and still found time to sleep.",
    "The ferry runs every thirty minutes during the summer season.",
    "Bees are essential for pollinating many of the crops we eat.",
    "The password must contain at least twelve characters.",
]

_SUBJ = ["The engineer", "My neighbour", "The government", "A young student", "The company", "Our team",
         "The old farmer", "The pilot", "A local artist", "The hospital", "The professor", "The children",
         "The mayor", "A tourist", "The committee", "The startup", "The musician", "The police",
         "The research group", "The shop owner"]
_VERB = ["announced", "rejected", "discovered", "built", "designed", "cancelled", "painted", "repaired",
         "described", "questioned", "funded", "tested", "improved", "explained", "sold", "ignored",
         "celebrated", "measured", "reviewed", "planned"]
_OBJ = ["a new bridge over the river", "the annual budget", "an unusual species of bird", "the broken heating system",
        "a plan to reduce traffic", "the results of the experiment", "a mural in the town square",
        "the summer music festival", "a cheaper way to store energy", "the safety rules for the factory",
        "a small wooden boat", "the election results", "the route through the mountains", "a vaccine trial",
        "the history of the castle", "a faster search algorithm", "the flooded basement", "the price of bread",
        "a garden on the roof", "the schedule for next week"]
_WHEN = ["yesterday", "last spring", "on Monday morning", "after a long delay", "during the storm",
         "before the holidays", "in front of a large crowd", "without any warning", "for the third time",
         "late at night", "earlier this year", "despite the protests"]
_WHY = ["because the old one was unsafe", "to save money", "after many complaints", "to attract visitors",
        "as part of a larger project", "although nobody asked for it", "so that everyone could take part",
        "to meet the new regulations", "because demand kept growing", "after years of research"]
_Q_START = ["Why did", "When will", "How often does", "Where can", "Who decided that", "What happens when"]
_Q_REST = ["the bus stop running after midnight", "the bakery change its opening hours",
           "the weather turn cold in this valley", "I renew my passport", "the meeting should start earlier",
           "the river rises above the old wall", "a computer runs out of memory", "the team train on weekends",
           "the museum offer free tours", "the price of fuel go up"]
_ADJ = ["quiet", "crowded", "expensive", "beautiful", "dangerous", "modern", "tiny", "famous", "ancient", "noisy"]
_PLACE = ["restaurant", "village", "laboratory", "airport", "market", "library", "beach", "stadium", "factory",
          "garden", "hotel", "station"]
_TOPIC = ["climate change", "machine learning", "public transport", "renewable energy", "medieval history",
          "urban gardening", "space exploration", "online privacy", "ocean pollution", "ancient languages"]
_INSTR = ["Preheat the oven to 200 degrees and grease a baking tray.",
          "Restart the router, wait a minute, and then try to connect again.",
          "Fill in the form, sign it, and bring it to the front desk.",
          "Water the plants twice a week and keep them out of direct sunlight.",
          "Write your name at the top of every page of the exam.",
          "Save your work often and close the program before shutting down."]


def _templated(rng: np.random.Generator) -> str:
    k = int(rng.integers(0, 6))
    pick = lambda xs: xs[int(rng.integers(0, len(xs)))]  # noqa: E731
    if k == 0:
        return f"{pick(_SUBJ)} {pick(_VERB)} {pick(_OBJ)} {pick(_WHEN)}."
    if k == 1:
        return f"{pick(_SUBJ)} {pick(_VERB)} {pick(_OBJ)} {pick(_WHY)}."
    if k == 2:
        return f"{pick(_Q_START)} {pick(_Q_REST)}?"
    if k == 3:
        return (f"The {pick(_ADJ)} {pick(_PLACE)} near our house was {pick(_ADJ)} {pick(_WHEN)}, "
                f"so we went to the {pick(_PLACE)} instead.")
    if k == 4:
        return (f"In her latest book, the author argues that {pick(_TOPIC)} and {pick(_TOPIC)} "
                f"are more closely linked than most people think.")
    return f"{pick(_INSTR)} {pick(_SUBJ)} {pick(_VERB)} {pick(_OBJ)} {pick(_WHY)}."


def descr_sentences() -> list[str]:
    """Prose sentences from scikit-learn's bundled dataset descriptions (tables, lists,
    references and headings dropped)."""
    try:
        import sklearn.datasets
    except ImportError:
        return []
    descr = Path(sklearn.datasets.__file__).parent / "descr"
    out: list[str] = []
    for f in sorted(descr.glob("*.rst")):
        paras, cur = [], []
        for line in f.read_text(encoding="utf-8").splitlines():
            s = line.strip()
            if not s or s.startswith((".. ", ":", "=", "-", "*", "|", "+", "#", "[")) or re.match(r"^[\d.]+\s", s):
                if cur:
                    paras.append(" ".join(cur))
                cur = []
                continue
            if line.startswith("    ") or "  " in s or "http" in s:
                continue
            cur.append(s)
        if cur:
            paras.append(" ".join(cur))
        for p in paras:
            p = re.sub(r"`([^`<]*?)\s*(<[^>]*>)?`_*", r"\1", p).replace("``", "")
            for sent in re.split(r"(?<=[.!?])\s+(?=[A-Z])", p):
                words = sent.split()
                alpha = sum(c.isalpha() or c == " " for c in sent) / max(1, len(sent))
                if 6 <= len(words) <= 45 and alpha > 0.85 and sent[-1] in ".?!":
                    out.append(sent)
    seen, uniq = set(), []
    for s in out:
        if s not in seen:
            seen.add(s)
            uniq.append(s)
    return uniq


def docstring_sentences(limit: int = 200) -> list[str]:
    """First sentences of the docstrings of numpy's public functions (sorted by
    name, the first `limit` that read as prose)."""
    out: list[str] = []
    for name in sorted(dir(np)):
        obj = getattr(np, name, None)
        doc = getattr(obj, "__doc__", None) if callable(obj) and not name.startswith("_") else None
        if not doc or isinstance(obj, type):
            continue
        para = " ".join(doc.strip().split("\n\n")[0].split())
        first = re.split(r"(?<=[.!?])\s+", para)[0]
        words = first.split()
        alpha = sum(c.isalpha() or c == " " for c in first) / max(1, len(first))
        if 6 <= len(words) <= 30 and alpha > 0.9 and first[0].isupper() and first.endswith("."):
            out.append(first)
        if len(out) >= limit:
            break
    return list(dict.fromkeys(out))


def sentences(seed: int, n: int) -> tuple[list[str], dict]:
    """n distinct sentences in a seeded order, and how many came from each source."""
    rng = np.random.default_rng(seed)
    real = descr_sentences()
    docs = [d for d in docstring_sentences() if d not in set(real)]
    pool = list(dict.fromkeys(list(HANDWRITTEN) + real + docs))
    n_real = len(pool)
    seen = set(pool)
    n_tmpl = 0
    while len(pool) < n:
        s = _templated(rng)
        if s not in seen:
            seen.add(s)
            pool.append(s)
            n_tmpl += 1
    order = rng.permutation(len(pool))[:n]
    chosen = [pool[i] for i in order]
    h, r = len(HANDWRITTEN), len(HANDWRITTEN) + len(real)
    src = {"handwritten": sum(1 for i in order if i < h),
           "sklearn_descr": sum(1 for i in order if h <= i < r),
           "numpy_docstrings": sum(1 for i in order if r <= i < n_real),
           "templated": sum(1 for i in order if i >= n_real)}
    return chosen, src
