"""Small typed facades over Azure Storage: the only place that builds SDK clients."""
