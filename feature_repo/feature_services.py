"""Feature services: the versioned contract between features and a model."""

from card_features import card_txn_features, card_window_state
from feast import FeatureService

fraud_v1 = FeatureService(
    name="fraud_v1",
    features=[card_window_state],
    description="Online inputs of the fraud model v1: the card's window state, evaluated at request "
                "time by streaming.read into the features of ARCHITECTURE.md.",
)
fraud_v1_training = FeatureService(
    name="fraud_v1_training",
    features=[card_txn_features],
    description="The same features, point-in-time per transaction, from the offline log.",
)
