"""maillage.testing: network and fault emulation for the multi-site fault harness.

Small modules, one job each:

* ``netns``     - ``Mesh``: one network namespace per site on a bridge (198.18.0.0/15,
                  no default route), ``run_in``, ``connect``, ``netns_available()``.
* ``faults``    - ``mesh.faults``: partition / split / isolate / heal, loss, tbf
                  bandwidth caps, latency + jitter (via ``relay``).
* ``relay``     - user-space delaying TCP relay (this kernel has no netem).
* ``processes`` - ``Supervisor``: start (in a site), SIGKILL, SIGSTOP/SIGCONT,
                  restart, wait for a port; kills only the pids it started.
* ``disk``      - ``Tmpfs`` to fill a node's disk; bit flip / truncate helpers.
* ``clock``     - clock skew for one process with libfaketime.

Nothing here imports the node; the harness composes these pieces.
"""

from .clock import faketime_available, with_skew
from .disk import Tmpfs, fill, flip_bit, truncate
from .faults import Faults, Link
from .netns import HOST, Mesh, SiteNet, netns_available
from .processes import Proc, Supervisor

__all__ = ["HOST", "Mesh", "SiteNet", "netns_available", "Faults", "Link", "Supervisor",
           "Proc", "Tmpfs", "fill", "flip_bit", "truncate", "faketime_available", "with_skew"]
