"""The local stack: real Apache Kafka (KRaft), Redis, MLflow and Feast under supervisord.

``python -m stack up`` (what ``make up`` runs) installs what is missing, starts every service,
waits until each is healthy and returns. The test fixtures start the same stack on free ports.
"""
