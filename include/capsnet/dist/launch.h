#pragma once

// A group of local processes with torchrun's environment (RANK, WORLD_SIZE,
// LOCAL_RANK, LOCAL_WORLD_SIZE, GROUP_RANK, MASTER_ADDR, MASTER_PORT,
// TORCHELASTIC_RESTART_COUNT, TORCHELASTIC_MAX_RESTARTS), without Python:
// what `capsnet launch` runs. Signals are passed on to every process; when one
// fails, the others get a grace period to stop on their own (a capsnet rank
// notices within --dist-timeout and says why), then are terminated; with
// max_restarts the group is then started again.

#include <functional>
#include <ostream>
#include <string>
#include <vector>

namespace capsnet::dist {

/// The process group `launch` runs on this machine, and how.
struct LaunchOptions {
  int nproc = 1;     ///< processes on this machine
  int nnodes = 1;    ///< machines in the job
  int node_rank = 0; ///< this machine's index in the job
  std::string master_addr = "127.0.0.1"; ///< MASTER_ADDR: where rank 0's machine is reached
  int master_port = 0; ///< 0: a free port of this machine (one-machine jobs only)
  /// Seconds the other processes get to stop on their own after one fails
  /// (none when the group will be restarted, torchrun's way); then SIGTERM,
  /// and SIGKILL 10 s later.
  double grace = 90;
  int max_restarts = 0; ///< start the whole group again up to N times after a failure
  /// The program each process runs (execv) and its arguments, argv[0] first.
  std::string program = "/proc/self/exe";
  std::vector<std::string> argv; ///< the arguments, argv[0] first
  std::ostream* log = nullptr; ///< what the launcher says (starts, failures); null: nothing
  /// Polled every 50 ms: a signal to pass on to every process (0: none),
  /// StopSignals::take in the tool. A group that got one is not restarted.
  std::function<int()> take_signal;
};

/// Runs the group, restarting it as `options` allow; returns 0 when every
/// process of the last attempt succeeded, else the first failure's exit code
/// (128 + N for a process killed by signal N). Throws std::invalid_argument
/// for inconsistent options (node_rank >= nnodes, several machines without
/// master_port, no argv) and std::runtime_error when a process cannot be
/// forked.
int launch(const LaunchOptions& options);

/// A TCP port of 127.0.0.1 nobody listens on now (the kernel's choice).
int free_port();

} // namespace capsnet::dist
