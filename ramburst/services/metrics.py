"""The metrics service: Prometheus metrics of the whole cluster from the mgr's own exporter
(the prometheus mgr module), on the instance's address and a free port (never 9283, the
module's default, which a second instance or a node exporter would already hold)."""
from __future__ import annotations

from pathlib import Path

from ..errors import UsageError
from ..wait import Timeouts, http_answers, wait_until
from .base import HostContext, Service

MGR_MODULES = Path("/usr/share/ceph/mgr")  # Debian/Ubuntu's ceph-mgr-modules-core


class MetricsService(Service):
    name, label = "metrics", "metrics at"
    ports = 1
    steps = {"start": ("metrics-start",), "ready": ("metrics-ready",)}

    def check(self, config, host_label) -> None:
        if not (MGR_MODULES / "prometheus" / "module.py").is_file():
            raise UsageError(f"the metrics service needs the mgr prometheus module ({MGR_MODULES}/prometheus): "
                             "sudo apt-get install ceph-mgr-modules-core")

    def facts(self, plan) -> dict[str, str]:
        return {"metrics": f"http://{plan.mon_address}:{plan.ports['metrics']}/metrics"}

    def start(self, host: HostContext) -> None:
        url = self.facts(host.plan)["metrics"]
        with host.steps.step("metrics-start", f"metrics exporter on {url}"):
            # The options first: the module reads them when it starts serving. `force`: the
            # monitor learns the mgr's modules and their options only once the new mgr has
            # reported them (check() made sure the module is installed).
            for key, value in (("server_addr", host.plan.mon_address), ("server_port", host.plan.ports["metrics"])):
                host.admin.command("config set", who="mgr", name=f"mgr/prometheus/{key}", value=str(value),
                                   force=True)
            host.admin.command("mgr module enable", module="prometheus", force="--force")

    def ready(self, host: HostContext) -> None:
        url = self.facts(host.plan)["metrics"]
        with host.steps.step("metrics-ready", "metrics answer"):
            # 200 only: the exporter answers 503 "No cached data available yet" until its first collection.
            wait_until(lambda: http_answers(url, status=200), Timeouts.METRICS_HTTP, f"the metrics endpoint {url}",
                       interval=0.05, check=host.check_daemons, cancel=host.steps.cancel)

    def environment(self, inst, state_dir, host_label) -> dict[str, str]:
        return {"RAMBURST_METRICS_URL": inst.endpoints["metrics"]}
