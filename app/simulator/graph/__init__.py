"""The built-in Microsoft Graph simulator: a seeded tenant served over HTTPS.

What it reproduces and why it exists: docs/architecture.md §11.
"""

from app.simulator.graph.certs import CertPaths, ensure_certificates, make_client_certificate
from app.simulator.graph.generator import TenantSpec, generate
from app.simulator.graph.server import RunningSimulator, run, start_in_thread
from app.simulator.graph.state import SimulatorState

__all__ = [
    "CertPaths",
    "RunningSimulator",
    "SimulatorState",
    "TenantSpec",
    "ensure_certificates",
    "generate",
    "make_client_certificate",
    "run",
    "start_in_thread",
]
