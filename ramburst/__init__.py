"""ramburst: a real Ceph cluster in the RAM of a job's nodes, for the lifetime of the job."""
from .api import Cluster, attach, deploy, up
from .config import Config, build_config
from .errors import DeployError, RamburstError, UsageError

__version__ = "0.1.0"
__all__ = ["Cluster", "Config", "DeployError", "RamburstError", "UsageError", "attach",
           "build_config", "deploy", "up", "__version__"]
