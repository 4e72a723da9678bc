"""Where the faces are: detectors, the finder that zooms for small faces, the tracker."""
