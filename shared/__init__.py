"""The contract, settings and storage facades that the API and the worker share."""
