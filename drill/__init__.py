"""`keel drill`: crash-recovery drills against a running keel, as a product feature.

Scripted sessions run over the HTTP API while faults drawn from a seed land on the target's
processes (`keel up` through its admin socket, or a deployment's processes by pid file and
start command); then every session's log, workspace effects and stream are checked against
DESIGN.md's invariants. `check_log` is also what keel's own tests assert. The report is
printed (`render`), written as JSON, and as a page (`render_html`).
"""

from drill._faults import InjectedFault, sqlite_write_locked
from drill._invariants import Violation, check_log
from drill._page import render_html
from drill._plan import FAULT_KINDS, FaultKind, PlannedFault, plan_faults
from drill._report import KindFigures, Report, render
from drill._run import DrillOptions, run_drill
from drill._targets import (
    DeploymentConfig,
    DeploymentTarget,
    EmbeddedTarget,
    Endpoints,
    ProcessControl,
    StoreControl,
    Target,
    TargetUnreachable,
)

__all__ = [
    "FAULT_KINDS",
    "DeploymentConfig",
    "DeploymentTarget",
    "DrillOptions",
    "EmbeddedTarget",
    "Endpoints",
    "FaultKind",
    "InjectedFault",
    "KindFigures",
    "PlannedFault",
    "ProcessControl",
    "Report",
    "StoreControl",
    "Target",
    "TargetUnreachable",
    "Violation",
    "check_log",
    "plan_faults",
    "render",
    "render_html",
    "run_drill",
    "sqlite_write_locked",
]
