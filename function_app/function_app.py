"""Azure Functions entry point: the FastAPI app behind one catch-all HTTP function.

Kept thin on purpose; everything testable lives in `api.py` and `routes/`. Authorization is ours
(tokens from settings), so the Functions host's own keys are off (ANONYMOUS).

Deployed, this file is the root `function_app.py` and the API package is `aitrainer_api`:
`python -m infra.package_functions` rewrites the import below (see its docstring for why).
"""

import azure.functions as func

from function_app.api import create_app

app = func.AsgiFunctionApp(app=create_app(), http_auth_level=func.AuthLevel.ANONYMOUS)
