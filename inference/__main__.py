"""python -m inference: serve the API with uvicorn (uvloop, httptools) on STACK_API_PORT."""

import sys

import uvicorn

from core.settings import StackSettings
from inference.settings import InferenceSettings


def main() -> int:
    stack = StackSettings()
    try:
        InferenceSettings()
    except ValueError as exc:
        print(f"error: {str(exc).splitlines()[-1].strip()}", file=sys.stderr)
        return 1
    from inference.app import create_app

    uvicorn.run(create_app(stack), host=stack.host, port=stack.api_port, loop="uvloop", http="httptools",
                log_level="warning", access_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
