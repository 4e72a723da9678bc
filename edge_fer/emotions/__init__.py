"""What each face shows: preprocessing, the classifier, the labels and their smoothing."""
