"""The emotion classes, in the order every model and report uses."""

EMOTIONS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")

# fer2013.csv numbers its classes in a different order: angry, disgust, fear, happy, sad,
# surprise, neutral. Map that index to ours.
FER_CSV_TO_INDEX: dict[int, int] = {0: 0, 1: 1, 2: 2, 3: 3, 4: 5, 5: 6, 6: 4}
