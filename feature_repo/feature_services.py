"""Feature services: the versioned contract between features and a model."""

from card_features import card_stats
from feast import FeatureService

fraud_v1 = FeatureService(name="fraud_v1", features=[card_stats],
                          description="Inputs of the fraud model, version 1.")
