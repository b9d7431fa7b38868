"""Feature services: the versioned contract between features and a model."""

from card_features import card_txn_features, card_window_state
from feast import FeatureService
from user_features import user_click_features, user_click_state

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

personalization_v1 = FeatureService(
    name="personalization_v1",
    features=[user_click_state],
    description="Online inputs of the purchase-propensity model v1: the user's click state, evaluated "
                "at request time into core.user_features.USER_FEATURES.",
)
personalization_v1_training = FeatureService(
    name="personalization_v1_training",
    features=[user_click_features],
    description="The same features, point-in-time per click, from the offline log.",
)
