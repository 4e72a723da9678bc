"""The emotion classes, in the order every model and report uses."""

EMOTIONS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")

# fer2013.csv numbers its classes in a different order: angry, disgust, fear, happy, sad,
# surprise, neutral. Map that index to ours.
FER_CSV_TO_INDEX: dict[int, int] = {0: 0, 1: 1, 2: 2, 3: 3, 4: 5, 5: 6, 6: 4}

# What the daemon says when a face's smoothed evidence is too weak to name a label.
UNCERTAIN = "uncertain"

# Coarser label sets (smoothing.groups): each group's probability is the sum of its members'
# calibrated probabilities. "valence" is the positive / neutral / negative split; "four" is
# the 4-class set some FER projects train for (angry+disgust, fear+sad, happy, neutral), with
# surprise, which it leaves out, counted with happy (both high-arousal, and FER2013's
# surprise faces are mostly pleasant).
LABEL_GROUPS: dict[str, dict[str, tuple[str, ...]]] = {
    "none": {e: (e,) for e in EMOTIONS},
    "valence": {
        "positive": ("happy", "surprise"),
        "neutral": ("neutral",),
        "negative": ("angry", "disgust", "fear", "sad"),
    },
    "four": {
        "angry": ("angry", "disgust"),
        "sad": ("fear", "sad"),
        "happy": ("happy", "surprise"),
        "neutral": ("neutral",),
    },
}


def group_names(groups: str = "none") -> tuple[str, ...]:
    """The labels a face can get under `groups` (without `uncertain`)."""
    return tuple(LABEL_GROUPS[groups])


def published_labels(groups: str = "none") -> tuple[str, ...]:
    """Every value the daemon can publish as a face's label: the groups' names, then `uncertain`."""
    return (*group_names(groups), UNCERTAIN)


def group_matrix(groups: str = "none") -> list[list[float]]:
    """(groups x 7) 0/1 matrix: group probabilities = matrix @ the 7 emotion probabilities."""
    return [[1.0 if e in members else 0.0 for e in EMOTIONS] for members in LABEL_GROUPS[groups].values()]
