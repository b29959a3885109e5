"""The s3 service: radosgw plus a fresh S3 user whose keys exist only in this deployment."""
from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ..ceph.keys import write_private
from ..errors import DeployError, UsageError
from ..layout import Layout
from ..wait import Timeouts, http_answers, wait_until
from .base import DaemonWant, HostContext, Service

S3_USER = "ramburst"
REGION = "us-east-1"  # radosgw accepts any region in signatures; clients want one set


@dataclass(frozen=True)
class S3Credentials:
    endpoint: str
    access_key: str
    secret_key: str
    user: str = S3_USER

    def env(self, credentials_file: Path) -> dict[str, str]:
        return {"S3CMD_CONFIG": str(credentials_file.with_name("s3cfg")),
                "AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key,
                "AWS_ENDPOINT_URL": self.endpoint, "AWS_DEFAULT_REGION": REGION,
                "RAMBURST_S3_ENDPOINT": self.endpoint, "RAMBURST_S3_CREDENTIALS": str(credentials_file)}


def write_credentials(folder: Path, creds: S3Credentials) -> Path:
    """AWS shared-credentials file (with the endpoint, which newer AWS tools read) and an
    s3cmd config beside it; both mode 0600."""
    folder.mkdir(mode=0o700, exist_ok=True)
    path = folder / "credentials"
    write_private(path, f"[default]\naws_access_key_id = {creds.access_key}\n"
                        f"aws_secret_access_key = {creds.secret_key}\nendpoint_url = {creds.endpoint}\n"
                        f"region = {REGION}\nuser = {creds.user}\n")
    host = creds.endpoint.split("://", 1)[1]
    write_private(folder / "s3cfg", f"[default]\naccess_key = {creds.access_key}\nsecret_key = {creds.secret_key}\n"
                                    f"host_base = {host}\nhost_bucket = {host}\nuse_https = False\n"
                                    f"signature_v2 = False\nbucket_location = {REGION}\n")
    return path


def read_credentials(path: Path) -> S3Credentials:
    values = {}
    for line in path.read_text().splitlines():
        if "=" in line:
            k, v = line.split("=", 1)
            values[k.strip()] = v.strip()
    return S3Credentials(values["endpoint_url"], values["aws_access_key_id"], values["aws_secret_access_key"],
                         values.get("user", S3_USER))


def create_user(radosgw_admin: str, conf: Path, endpoint: str, log: Path) -> S3Credentials:
    """Create the S3 user straight in RADOS (no gateway round trip); radosgw sees it at once.

    radosgw-admin generates the keys itself and prints them on its stdout, a pipe only we
    read: a key passed as an argument would be in /proc/PID/cmdline, readable by every user.
    """
    from ..ceph.daemon import tool_env

    args = [radosgw_admin, "-c", str(conf), "-n", "client.admin", "user", "create", "--uid", S3_USER,
            "--display-name", "ramburst"]
    with open(log, "ab") as err:
        r = subprocess.run(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err,
                           timeout=120, env=tool_env())
    if r.returncode != 0:
        raise DeployError(f"radosgw-admin user create failed with exit code {r.returncode}", str(log))
    try:
        key = next(k for k in json.loads(r.stdout)["keys"] if k.get("user") == S3_USER)
        return S3Credentials(endpoint, key["access_key"], key["secret_key"])
    except (ValueError, KeyError, StopIteration, TypeError):
        raise DeployError("radosgw-admin user create printed no keys", str(log)) from None


def client(creds: S3Credentials):
    """A boto3 S3 client on the endpoint (path-style addressing: no DNS per bucket)."""
    import boto3
    from botocore.config import Config

    options = {"s3": {"addressing_style": "path"}, "retries": {"max_attempts": 2},
               "connect_timeout": 5, "read_timeout": 60}
    try:
        # botocore >= 1.36 adds a CRC32 of every body by default, which radosgw 16 does not
        # keep; computing it cost the client 2 % of the CPU of a 4 MiB PUT (docs/tuning.md).
        config = Config(request_checksum_calculation="when_required",
                        response_checksum_validation="when_required", **options)
    except TypeError:  # an older botocore, which never computed it
        config = Config(**options)
    return boto3.client("s3", endpoint_url=creds.endpoint, aws_access_key_id=creds.access_key,
                        aws_secret_access_key=creds.secret_key, region_name=REGION, config=config)


def wait_http(endpoint: str, timeout: float, check=None, cancel=None) -> None:
    """Until the gateway answers HTTP at all (an anonymous request; any status means the
    frontend is serving)."""
    wait_until(lambda: http_answers(endpoint), timeout, f"radosgw at {endpoint}", interval=0.05, check=check,
               cancel=cancel, failure=lambda: f"radosgw did not answer at {endpoint} within {timeout:.0f} s")


def wait_ready(creds: S3Credentials, timeout: float, check=None, cancel=None) -> None:
    """Until the gateway answers a signed request (ListBuckets) with this user's keys."""
    from botocore.exceptions import BotoCoreError, ClientError

    s3 = client(creds)
    last = [""]

    def answers() -> bool:
        try:
            s3.list_buckets()
            return True
        except (BotoCoreError, ClientError) as e:
            last[0] = str(e)
            return False

    wait_until(answers, timeout, f"the S3 endpoint {creds.endpoint}", interval=0.05, check=check, cancel=cancel,
               failure=lambda: f"the S3 endpoint {creds.endpoint} did not answer a signed request "
                               f"within {timeout:.0f} s: {last[0]}")


class S3Service(Service):
    """radosgw on the primary; its S3 user is made in a worker thread once it answers."""

    name, label = "s3", "S3 endpoint"
    binaries = ("rgw", "rgw-admin")
    daemons = (DaemonWant("rgw"),)
    quota = "own"
    steps = {"start": ("rgw-start", "rgw-ready", "s3-user"), "ready": ("s3-ready",)}

    def __init__(self):
        self.user_job = None
        self.creds: S3Credentials | None = None

    def check(self, config, host_label) -> None:
        try:
            import boto3  # noqa: F401
        except ImportError:
            raise UsageError("the s3 service needs boto3: pip install boto3") from None

    def start(self, host: HostContext) -> None:
        """Start radosgw; once it answers, create the S3 user (in the background; running
        radosgw-admin while radosgw sets up its zone makes both wait ~5 s on each other)."""
        rgws = host.of_kind("rgw")
        if not rgws:
            return
        rgw = rgws[0]
        with host.steps.step("rgw-start", f"radosgw started on {host.host.address}:{host.plan.rgw_port}"):
            endpoint = f"http://{host.host.address}:{host.plan.rgw_port}"
            rgw.prepare(host.layout.data(host.host.label, rgw.name))
            host.start(rgw)

        def make_user():
            with host.steps.step("rgw-ready", "radosgw answers"):
                wait_http(endpoint, Timeouts.RGW_HTTP, check=rgw.check_running, cancel=host.steps.cancel)
            with host.steps.step("s3-user", f"S3 user {S3_USER} with fresh keys"):
                self.creds = create_user(host.binaries["rgw-admin"], host.layout.conf, endpoint,
                                         host.layout.logs / "radosgw-admin.log")
                write_credentials(host.layout.s3, self.creds)
        self.user_job = host.submit(make_user)

    def ready(self, host: HostContext) -> None:
        if self.user_job is None:
            return
        self.user_job.result()
        with host.steps.step("s3-ready", f"S3 endpoint {self.creds.endpoint} answers signed requests"):
            wait_ready(self.creds, Timeouts.S3_SIGNED, check=host.check_daemons, cancel=host.steps.cancel)

    def endpoint(self, inst) -> str | None:
        return inst.s3_endpoint

    def environment(self, inst, state_dir, host_label) -> dict[str, str]:
        credentials = Layout(state_dir).credentials
        return read_credentials(credentials).env(credentials) if credentials.exists() else {}
