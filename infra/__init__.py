"""Deployment: Bicep templates, azd hooks and the Functions packaging script."""
