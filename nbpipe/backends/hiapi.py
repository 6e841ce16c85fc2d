"""HiAPI's async task API: POST /v1/tasks, poll GET /v1/tasks/{id}, download output[0].url."""

from __future__ import annotations

from nbpipe.plan.frame import Frame

PAYLOAD_STYLE = "https URL"


def create_body(frame: Frame, image_urls: list[str]) -> dict:
    """The POST /v1/tasks body. `resolution` and `image_input` go only to models that take them
    (the resolver has already dropped them elsewhere: Nano-Banana answers 400 to `resolution`)."""
    task_input: dict = {"prompt": frame.prompt, **frame.params}
    if image_urls:
        task_input["image_input"] = list(image_urls)
    return {"model": frame.model, "input": task_input}
