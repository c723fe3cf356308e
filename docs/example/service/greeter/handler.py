"""The function's entry point: `greeter.handler.handler`."""

from importlib.metadata import version

from acme_shared import greeting


def handler(event, context):
    return {"message": greeting(event.get("name", "world")), "acme-shared": version("acme-shared")}
