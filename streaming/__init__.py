"""Stream stage: event generators and Faust processors that compute windowed features."""
