"""The HTTP API, deployed as an Azure Functions app.

Modules import each other relatively: deployed, this package is `aitrainer_api`
(see infra/package_functions.py), while `function_app` names the entry point there.
"""
