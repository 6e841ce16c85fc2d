"""A team's shared remote cache on loopback: moto's S3 server (tests/fakes/s3.py: one a process, a
bucket per instance) behind a cable that can be unplugged, which fails the four ways a real one
does:

    unplugged      the network drops every connection, also those of a running command
    dead port      nothing listens at the endpoint (connection refused)
    unknown key    S3 answers 403: the access key is not known (InvalidAccessKeyId)
    no permission  S3 answers 403: a real key with no permission (AccessDenied)

The 403s come from moto's own IAM checks, which it applies only when told to
(/moto-api/reset-auth, process-wide: `restore` turns them off again). `env()` is what points
nbpipe at the remote in its present state; `holdings()` looks at the bucket from outside, past
any check nbpipe is failing.

    remote = TeamRemote(); remote.fail("no permission"); ...; remote.restore(); remote.close()
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from contextlib import contextmanager
from urllib.parse import urlsplit

from tests.fakes.cable import Cable
from tests.fakes.s3 import endpoint as s3_endpoint

FAILURES = ("unplugged", "dead port", "unknown key", "no permission")
DENIED = ("unknown key", "no permission")
DOWN = ("unplugged", "dead port")  # no connection: a retry cannot succeed while it lasts
DEAD = "http://127.0.0.1:9"  # nothing listens there
PREFIX = "cache"


class TeamRemote:
    def __init__(self):
        self.endpoint = s3_endpoint()
        host, _, port = urlsplit(self.endpoint).netloc.partition(":")
        self.cable = Cable((host, int(port))).__enter__()
        self.bucket = f"team-{uuid.uuid4().hex[:10]}"  # moto keeps buckets per process
        self.url = f"s3://{self.bucket}/{PREFIX}"
        self.s3 = self._client("s3")
        self.s3.create_bucket(Bucket=self.bucket)
        self.outsider: tuple[str, str] | None = None  # a user with no permission, once made
        self.mode = "up"
        self._lifted = False

    def close(self) -> None:
        self.restore()
        self.cable.__exit__(None, None, None)
        names = self.objects("blobs") + self.objects("takes") + self.objects("claims")
        for at in range(0, len(names), 1000):  # moto keeps them in memory: a soak is long
            self.s3.delete_objects(Bucket=self.bucket, Delete={
                "Objects": [{"Key": name} for name in names[at:at + 1000]]})
        self.s3.delete_bucket(Bucket=self.bucket)

    def _client(self, service: str):
        import boto3

        return boto3.client(service, endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id="test", aws_secret_access_key="test")

    # --- its state -----------------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        """What points a command at the remote as it is now. While the network is down (the
        cable unplugged, the port dead), one attempt per request (AWS_MAX_ATTEMPTS, which
        README lets a user set): retrying only waits out botocore's backoff, seconds a command,
        and each request fails all the same. A command during which the cable is put back
        goes without it: a retry may then meet the remote."""
        key, secret = {"unknown key": ("AKIAUNKNOWNKEY000000", "not-a-secret"),
                       "no permission": self.outsider}.get(self.mode) or ("test", "test")
        return {"AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": secret,
                "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true",
                "NBPIPE_REMOTE": self.url,
                "NBPIPE_REMOTE_ENDPOINT": DEAD if self.mode == "dead port" else self.cable.url,
                **({"AWS_MAX_ATTEMPTS": "1"} if self.mode in DOWN else {})}

    def fail(self, how: str) -> None:
        self.restore()
        self.mode = how
        if how == "unplugged":
            self.cable.unplug()
        elif how in DENIED:
            if how == "no permission" and self.outsider is None:
                self.outsider = self._user_without_permissions()
            self._auth(True)

    def restore(self) -> None:
        if self.mode in DENIED:
            self._auth(False)
        self.cable.plug()
        self.mode = "up"

    def unplug(self) -> None:
        """The network goes down now (a running command's connections too)."""
        self.cable.unplug()
        if self.mode == "up":
            self.mode = "unplugged"

    def _auth(self, on: bool) -> None:
        import requests

        requests.post(f"{self.endpoint}/moto-api/reset-auth", data=b"0" if on else b"inf",
                      timeout=10).raise_for_status()

    def _user_without_permissions(self) -> tuple[str, str]:
        iam = self._client("iam")
        name = f"outsider-{uuid.uuid4().hex[:8]}"
        iam.create_user(UserName=name)
        key = iam.create_access_key(UserName=name)["AccessKey"]
        return key["AccessKeyId"], key["SecretAccessKey"]

    # --- what it holds, from outside -----------------------------------------------------------

    @contextmanager
    def _admin(self):
        """Past the IAM checks (re-entrant: only the outermost turns them back on)."""
        lift = self.mode in DENIED and not self._lifted
        if lift:
            self._auth(False)
            self._lifted = True
        try:
            yield
        finally:
            if lift:
                self._lifted = False
                self._auth(True)

    def objects(self, under: str) -> list[str]:
        names, token = [], {}
        with self._admin():
            while True:
                page = self.s3.list_objects_v2(Bucket=self.bucket, Prefix=f"{PREFIX}/{under}/",
                                               **token)
                names += [o["Key"] for o in page.get("Contents", [])]
                if not page.get("IsTruncated"):
                    return names
                token = {"ContinuationToken": page["NextContinuationToken"]}

    def blobs(self) -> set[str]:
        return {name.rpartition("/")[2] for name in self.objects("blobs")}

    def holdings(self, identity: Callable[[dict], object]) -> tuple[dict, set[str], set[str]]:
        """(identity(request) → digests of the takes whose blob is there, blobs, digests with a
        take record): what a command that can read the remote finds there."""
        blobs, held, recorded = self.blobs(), {}, set()
        with self._admin():
            for name in self.objects("takes"):
                digest = name.rpartition("/")[2].removesuffix(".json")
                recorded.add(digest)
                doc = json.loads(self.s3.get_object(Bucket=self.bucket, Key=name)["Body"].read())
                if digest in blobs:
                    held.setdefault(identity(doc.get("request") or {}), set()).add(digest)
        return held, blobs, recorded
