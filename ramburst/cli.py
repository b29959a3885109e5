"""The command line: stdout for results, stderr for progress, one line and a non-zero exit on error.

click (not argparse) because `run -- CMD ARGS` and shared option groups come for free and its
errors can be caught and reduced to one line; rich draws the progress on stderr.
"""
from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
import tempfile
from pathlib import Path

import click

from . import lifecycle
from . import status as status_mod
from .config import Config, build_config, check_name, default_state_root, read_config_file
from .errors import Interrupted, RamburstError, UsageError
from .instance import InstanceState


def up_options(f):
    """The options that describe a deployment, shared by `up` and `run`."""
    opts = [
        click.option("--config", "config_file", type=click.Path(path_type=Path),
                     help="TOML file, or a DisTRaX .cfg/.ini file."),
        click.option("--name", help="Instance name (default: default)."),
        click.option("--size", help="RAM per host for all its OSDs, e.g. 2G (default: 2G)."),
        click.option("--osds", type=int, help="OSDs per host (default: 1)."),
        click.option("--replicas", type=int, help="Copies of each object (default: 1)."),
        click.option("--pool", help="Pool name (default: ramburst)."),
        click.option("--interface", help="Network interface the daemons bind (default: lo)."),
        click.option("--state-dir", type=click.Path(path_type=Path),
                     help="Folder for config, keys, logs (default: ~/.local/state/ramburst/NAME)."),
        click.option("--device", type=click.Choice(["file", "memstore"]),
                     help="OSD store: BlueStore on a tmpfs file (default) or memstore."),
        click.option("--checksums/--no-checksums", default=None,
                     help="BlueStore checksums and OSD data digests (default: off, see docs/tuning.md)."),
        click.option("--service", "services", multiple=True,
                     help="pool, s3, fs or metrics; repeat for several (default: pool)."),
        click.option("--mount", type=click.Path(path_type=Path),
                     help="Where the fs service is mounted (default: ~/ramburst/NAME)."),
        click.option("--share-mount/--no-share-mount", default=None,
                     help="Let other users reach the fs mount (FUSE allow_other; default: only you)."),
        click.option("--mpi", is_flag=True, help="One host per MPI rank (mpirun/srun start one rank per node)."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def select_options(f):
    """Which instance a command acts on."""
    for o in reversed([
        click.option("--name", help="Instance name (default: default)."),
        click.option("--state-dir", type=click.Path(path_type=Path), help="The instance's state folder."),
        click.option("--config", "config_file", type=click.Path(path_type=Path),
                     help="The config file it was deployed with."),
    ]):
        f = o(f)
    return f


def instance_dir(name: str | None, state_dir: Path | None, config_file: Path | None) -> Path:
    """The state folder a command acts on; --name is checked even where --state-dir wins."""
    if name is not None:
        check_name(name)
    if state_dir is not None:
        return state_dir.absolute()
    opts = read_config_file(config_file) if config_file else {}
    if "state_dir" in opts:
        return opts["state_dir"]
    return default_state_root() / check_name(name or opts.get("name") or "default")


def existing_instance(path: Path) -> Path:
    """For status and env: a folder that exists must be an instance (exit 2 otherwise)."""
    state = InstanceState(path)
    if state.exists():
        state.check_instance()
    return path


def env_hint(config: Config) -> str:
    how = (f"--state-dir {shlex.quote(str(config.instance_dir))}" if config.state_dir
           else f"--name {shlex.quote(config.name)}")
    return f"eval \"$(ramburst env {how})\""


def make_config(config_file, **flags) -> Config:
    config = build_config(config_file, **flags)
    for note in config.notes:
        click.echo(f"ramburst: note: {note}", err=True)
    return config


class FeatureGroup(click.Group):
    """The data-layer commands register here by module path and are imported only when named
    (or listed by --help): `up`, `down`, `env` and `run` start without loading zarr, numpy or
    starlette, which more than doubled every command's start (and `down`'s time)."""

    features = {"array": "ramburst.arrays.cli:array", "dashboard": "ramburst.dashboard.cli:dashboard",
                "stage": "ramburst.stage.cli:stage"}

    def list_commands(self, ctx):
        return sorted([*super().list_commands(ctx), *self.features])

    def get_command(self, ctx, name):
        if name in self.features:
            import importlib

            module, attr = self.features[name].split(":")
            return getattr(importlib.import_module(module), attr)
        return super().get_command(ctx, name)


@click.group(cls=FeatureGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="ramburst")
def main():
    """Turn this job's RAM into a real Ceph storage system, and remove it afterwards."""


def make_comm(mpi: bool):
    if not mpi:
        return None
    from .mpi import Comm

    return Comm()


@main.command()
@up_options
def up(config_file, mpi, **flags):
    """Deploy an instance and return once its pool takes writes."""
    comm = make_comm(mpi)
    config = make_config(config_file, **flags)
    lifecycle.up(config, comm=comm)
    if comm is not None and comm.rank != 0:
        return
    click.echo(f"ramburst: {config.name} is up; use it with: {env_hint(config)}", err=True)


@main.command()
@select_options
@click.option("--mpi", is_flag=True, help="Every MPI rank removes its host's part.")
def down(name, state_dir, config_file, mpi):
    """Remove an instance: processes, RAM, files. Doing it twice is harmless."""
    comm = make_comm(mpi)
    path = instance_dir(name, state_dir, config_file)
    if not lifecycle.down(path, comm=comm) and (comm is None or comm.rank == 0):
        click.echo(f"ramburst: nothing to remove at {path}", err=True)


@main.command()
@select_options
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status(name, state_dir, config_file, as_json):
    """Health, capacity and daemons; exits non-zero when the instance is not up."""
    path = existing_instance(instance_dir(name, state_dir, config_file))
    try:
        report = status_mod.collect(path)
    except status_mod.NotUp as e:
        if as_json:
            click.echo(json.dumps({"name": name or "default", "state": "absent", "error": str(e)}))
        raise
    click.echo(json.dumps(report, indent=1) if as_json else status_mod.render_text(report))
    if not status_mod.is_up(report):
        sys.exit(1)


@main.command()
@select_options
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object instead of shell exports.")
def env(name, state_dir, config_file, as_json):
    """Print the environment for Ceph clients: eval "$(ramburst env)"."""
    variables = status_mod.environment(existing_instance(instance_dir(name, state_dir, config_file)))
    if as_json:
        click.echo(json.dumps(variables, indent=1))
    else:
        for k, v in variables.items():
            click.echo(f"export {k}={shlex.quote(v)}")


@main.command(context_settings={"ignore_unknown_options": False})
@up_options
@click.option("--grace", type=float, default=10.0, show_default=True,
              help="Seconds CMD gets to exit after SIGTERM before it is killed.")
@click.option("--dashboard", is_flag=True, help="Serve the live dashboard for the job's lifetime (URL on stderr).")
@click.option("--stage-in", "stage_in", multiple=True, type=click.Path(path_type=Path),
              help="Copy this file or folder into the instance before CMD (repeatable; see `stage in`).")
@click.option("--stage-out", "stage_out", type=click.Path(path_type=Path),
              help="Copy the instance's data to this folder after CMD, also on a time limit, before down.")
@click.option("--stage-to", help="Where --stage-in puts data and --stage-out reads it (default: fs:/ or pool:).")
@click.option("--stage-codec", metavar="NAME[:LEVEL]", help="--stage-in compresses volumes (.npy, HDF5) into "
              "zarr arrays (lossless: volume or zstd; see `stage in --codec`).")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def run(config_file, grace, command, mpi, dashboard, stage_in, stage_out, stage_to, stage_codec, **flags):
    """Deploy, run COMMAND with the instance's environment, always remove; exit with COMMAND's status.

    With --mpi, every rank deploys its host, rank 0 runs COMMAND once all are ready, and every
    rank exits with COMMAND's status after the teardown."""
    from .run import run as run_job

    comm = make_comm(mpi)
    config = make_config(config_file, **flags)
    for src in stage_in:
        if not src.exists() and not src.is_symlink():
            raise UsageError(f"--stage-in {src}: no such file or folder")
    if stage_codec is not None:
        from .stage.compress import parse_codec

        parse_codec(stage_codec)
    code = run_job(config, list(command), grace, comm=comm, stage_in=list(stage_in), stage_out=stage_out,
                   stage_to=stage_to, dashboard=dashboard, stage_codec=stage_codec)
    sys.exit(code)


@main.command()
@click.option("--name", help="Bench this running instance instead of deploying one.")
@click.option("--state-dir", type=click.Path(path_type=Path), help="The running instance's state folder.")
@click.option("--size", default="3G", show_default=True, help="RAM of the instance deployed for the bench.")
@click.option("--mib", type=click.IntRange(16), default=512, show_default=True,
              help="MiB written per 4 MiB workload and path.")
@click.option("--seconds", type=click.FloatRange(0.5), default=3.0, show_default=True,
              help="Duration of each 4 KiB workload.")
@click.option("--passes", type=click.IntRange(1), default=3, show_default=True,
              help="Measured passes per workload (after one warm-up pass); figures are medians.")
@click.option("--deploys", type=click.IntRange(0), default=3, show_default=True,
              help="Deploys timed for the median up/down (deployed bench only).")
@click.option("--json", "as_json", is_flag=True, help="Rows as JSON on stdout.")
@click.option("--plot", type=click.Path(path_type=Path), help="Also draw the ratios to this PNG.")
def bench(name, state_dir, size, mib, seconds, passes, deploys, as_json, plot):
    """Throughput of pool, S3 and fs next to plain tmpfs in the same run, and up/down times."""
    from .bench import report, runner

    if plot is not None:
        _check_matplotlib()
    if name or state_dir:
        path = instance_dir(name, state_dir, None)
        if not path.exists():
            raise status_mod.NotUp(f"no instance at {path}")
        rows = runner.run(None, path, mib * 2**20, seconds, 0, passes=passes)
        notes = {"instance": str(path)}
    else:
        mount_root = Path(tempfile.mkdtemp(prefix="ramburst-bench-mnt-"))
        try:
            config = build_config(name=f"bench{os.getpid()}", size=size, services=("pool", "s3", "fs"),
                                  state_dir=str(default_state_root() / f"bench{os.getpid()}"),
                                  mount=str(mount_root / "mnt"))
            rows = runner.run(config, None, mib * 2**20, seconds, deploys, passes=passes)
        finally:
            shutil.rmtree(mount_root, ignore_errors=True)
        notes = {"instance": "deployed for the bench", "size": size}
    notes.update(mib=mib, seconds=seconds, passes=passes, cpus=os.cpu_count())
    click.echo(report.to_json(rows, notes) if as_json else report.table(rows))
    if plot is not None:
        report.plot(rows, str(plot))
        click.echo(f"ramburst: plot written to {plot}", err=True)


def _check_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UsageError("--plot needs matplotlib: pip install 'ramburst[plot]'") from None


def cli(argv: list[str] | None = None) -> int:
    """Entry point: every error becomes one line on stderr and an exit code."""
    try:
        main.main(args=argv, prog_name="ramburst", standalone_mode=False)
        return 0
    except click.UsageError as e:
        if type(e).__name__ == "NoArgsIsHelpError" or (argv is not None and not argv) or \
                (argv is None and len(sys.argv) == 1):
            click.echo(main.get_help(click.Context(main, info_name="ramburst")), err=True)
        else:
            click.echo(f"ramburst: error: {e.format_message()}", err=True)
        return 2
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.exceptions.Abort:
        return 130
    except Interrupted as e:
        click.echo(f"ramburst: {e}; everything made so far was removed", err=True)
        return 128 + e.signum
    except RamburstError as e:
        click.echo(f"ramburst: error: {e}", err=True)
        return e.exit_code
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else 1


def entry() -> None:
    sys.exit(cli())


if __name__ == "__main__":
    entry()
