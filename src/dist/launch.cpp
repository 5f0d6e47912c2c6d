#include "capsnet/dist/launch.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <thread>

namespace capsnet::dist {

int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw std::runtime_error("cannot open a socket to find a free port");
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = 0;
  socklen_t size = sizeof address;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &size) != 0) {
    ::close(fd);
    throw std::runtime_error("cannot find a free port; pass --master-port");
  }
  ::close(fd);
  return ntohs(address.sin_port);
}

namespace {

using Clock = std::chrono::steady_clock;

int exit_code(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

std::string describe(int status) {
  if (WIFSIGNALED(status)) {
    return "was killed by signal " + std::to_string(WTERMSIG(status)) + " (" +
           strsignal(WTERMSIG(status)) + ")";
  }
  return "exited with status " + std::to_string(exit_code(status));
}

std::ostream& say(const LaunchOptions& o) {
  static std::ostream nowhere(nullptr);
  return o.log ? (*o.log << "capsnet launch: ") : nowhere;
}

// Starts local process `local` of attempt `attempt` with torchrun's variables.
pid_t start_process(const LaunchOptions& o, int port, int attempt, int local,
                    std::vector<char*>& argv) {
  const int rank = o.node_rank * o.nproc + local;
  const pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error("fork failed: " + std::string(std::strerror(errno)));
  if (pid > 0) return pid;
  std::signal(SIGINT, SIG_DFL);
  std::signal(SIGTERM, SIG_DFL);
  ::setenv("RANK", std::to_string(rank).c_str(), 1);
  ::setenv("WORLD_SIZE", std::to_string(o.nproc * o.nnodes).c_str(), 1);
  ::setenv("LOCAL_RANK", std::to_string(local).c_str(), 1);
  ::setenv("LOCAL_WORLD_SIZE", std::to_string(o.nproc).c_str(), 1);
  ::setenv("GROUP_RANK", std::to_string(o.node_rank).c_str(), 1);
  ::setenv("MASTER_ADDR", o.master_addr.c_str(), 1);
  ::setenv("MASTER_PORT", std::to_string(port).c_str(), 1);
  ::setenv("TORCHELASTIC_RESTART_COUNT", std::to_string(attempt).c_str(), 1);
  ::setenv("TORCHELASTIC_MAX_RESTARTS", std::to_string(o.max_restarts).c_str(), 1);
  ::unsetenv("TORCHELASTIC_USE_AGENT_STORE");
  ::execv(o.program.c_str(), argv.data());
  std::fprintf(stderr, "capsnet launch: cannot start %s: %s\n", o.program.c_str(),
               std::strerror(errno));
  std::_Exit(127);
}

// The group's processes as the launcher watches them.
struct Children {
  std::vector<pid_t> pids; // -1: finished
  int running = 0;
  int result = 0; // the first failure's exit code
  Clock::time_point failed_at = Clock::time_point::max();

  void signal_all(int signal) const {
    for (const pid_t pid : pids) {
      if (pid > 0) ::kill(pid, signal);
    }
  }
  // Reaps one finished process, if any; false when none had finished.
  bool reap(const LaunchOptions& o) {
    int status = 0;
    const pid_t done = ::waitpid(-1, &status, WNOHANG);
    if (done <= 0) return false;
    for (size_t local = 0; local < pids.size(); ++local) {
      if (pids[local] != done) continue;
      pids[local] = -1;
      --running;
      if (exit_code(status) == 0) continue;
      if (result == 0) result = exit_code(status), failed_at = Clock::now();
      say(o) << "rank " << o.node_rank * o.nproc + int(local) << " (PID " << done << ") "
             << describe(status) << std::endl;
    }
    return true;
  }
};

// One attempt: the local processes, started together and waited for.
// Returns the first failure's exit code (0 when all succeed).
int run_group(const LaunchOptions& o, int port, int attempt, bool& stopped) {
  auto args = o.argv;
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  Children group;
  for (int local = 0; local < o.nproc; ++local) {
    group.pids.push_back(start_process(o, port, attempt, local, argv));
  }
  group.running = o.nproc;
  auto& line = say(o) << o.nproc << " processes (ranks " << o.node_rank * o.nproc << "-"
                      << o.node_rank * o.nproc + o.nproc - 1 << " of " << o.nproc * o.nnodes
                      << "), rendezvous at " << o.master_addr << ":" << port;
  if (o.max_restarts > 0) line << ", attempt " << attempt + 1 << " of " << o.max_restarts + 1;
  line << std::endl;

  const bool restarting = attempt < o.max_restarts;
  bool terminated = false, killed = false;
  while (group.running > 0) {
    if (const int signal = o.take_signal ? o.take_signal() : 0) {
      stopped = true;
      group.signal_all(signal);
    }
    if (group.reap(o)) continue;
    const double since_failure =
        group.failed_at == Clock::time_point::max()
            ? -1
            : std::chrono::duration<double>(Clock::now() - group.failed_at).count();
    const double grace = restarting && !stopped ? 0 : o.grace;
    if (since_failure >= grace && !terminated) {
      if (grace > 0) {
        say(o) << group.running << " process(es) still running " << grace
               << " s after the first failure; terminating them" << std::endl;
      }
      group.signal_all(SIGTERM);
      terminated = true;
    }
    if (since_failure > grace + 10 && !killed) {
      group.signal_all(SIGKILL);
      killed = true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return group.result;
}

} // namespace

int launch(const LaunchOptions& o) {
  if (o.argv.empty()) throw std::invalid_argument("launch: no program arguments (argv[0] first)");
  if (o.nproc < 1 || o.nnodes < 1) throw std::invalid_argument("--nproc and --nnodes must be >= 1");
  if (o.node_rank < 0 || o.node_rank >= o.nnodes) {
    throw std::invalid_argument("--node-rank must be below --nnodes");
  }
  if (o.nnodes > 1 && o.master_port == 0) {
    throw std::invalid_argument("a job on several machines needs --master-addr (machine 0's "
                                "address) and --master-port, the same on every machine");
  }
  const int port = o.master_port > 0 ? o.master_port : free_port();
  bool stopped = false;
  for (int attempt = 0;; ++attempt) {
    const int result = run_group(o, port, attempt, stopped);
    if (result == 0 || stopped || attempt >= o.max_restarts) {
      if (result != 0 && !stopped && o.max_restarts > 0) {
        say(o) << "the group failed " << attempt + 1 << " times; no restarts left (--max-restarts "
               << o.max_restarts << ")" << std::endl;
      }
      return result;
    }
    say(o) << "restarting the group (restart " << attempt + 1 << " of " << o.max_restarts << ")"
           << std::endl;
  }
}

} // namespace capsnet::dist
