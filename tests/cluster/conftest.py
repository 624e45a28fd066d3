"""An S3-compatible server for the tests of run directories on object storage: moto in server
mode (a real HTTP endpoint; s3fs and botocore talk to it exactly as to S3), on a free port of
this machine, for the whole session. Clients find it through the standard AWS variables
(AWS_ENDPOINT_URL and test credentials), set here for this process and handed to subprocesses."""

from __future__ import annotations

import logging
import os
import uuid
from dataclasses import dataclass
from typing import Any

import pytest


@dataclass
class S3Server:
    endpoint: str
    env: dict[str, str]  # the variables a client process needs

    def filesystem(self) -> Any:
        import s3fs

        return s3fs.S3FileSystem(skip_instance_cache=True)

    def new_bucket(self) -> str:
        """A fresh, empty bucket's name."""
        name = f"voxhear-{uuid.uuid4().hex[:10]}"
        self.filesystem().mkdir(name)
        return name


@pytest.fixture(scope="session")
def s3_server():
    from moto.server import ThreadedMotoServer

    # werkzeug logs every request at INFO on stderr.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()  # none made before this endpoint was set may be reused
    try:
        yield S3Server(endpoint=env["AWS_ENDPOINT_URL"], env=env)
    finally:
        s3fs.S3FileSystem.clear_instance_cache()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        server.stop()
