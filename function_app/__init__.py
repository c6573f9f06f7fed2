"""The HTTP API, deployed as an Azure Functions app."""
