// capsnet launch: N local processes of `capsnet train` with torchrun's
// environment (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR,
// MASTER_PORT), without Python. Signals are passed on to every process; when
// one fails, the others get a grace period to stop on their own (they notice
// within --dist-timeout), then are terminated; with --max-restarts the group
// is then started again (TORCHELASTIC_RESTART_COUNT counts the restarts).

#include "commands.h"
#include "process.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstring>
#include <iostream>
#include <memory>
#include <stdexcept>
#include <thread>
#include <vector>

namespace capsnet::cli {

namespace {

// A port nobody listens on now (the kernel's choice), for a one-machine job.
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

struct LaunchFlags {
  int nproc = 1;
  int nnodes = 1;
  int node_rank = 0;
  std::string master_addr = "127.0.0.1";
  int master_port = 0;
  double grace = 90;
  int max_restarts = 0;
  std::vector<std::string> command;
};

int exit_code(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

std::string describe(int status) {
  if (WIFSIGNALED(status)) {
    return "was killed by signal " + std::to_string(WTERMSIG(status)) + " (" + strsignal(WTERMSIG(status)) + ")";
  }
  return "exited with status " + std::to_string(exit_code(status));
}

// One attempt: the local processes of the group, started together and
// waited for. Returns the first failure's exit code (0 when all succeed).
int run_group(const LaunchFlags& f, int port, int attempt, StopSignals& signals, bool& stopped) {
  const int world = f.nproc * f.nnodes;
  std::vector<std::string> args{"capsnet"};
  args.insert(args.end(), f.command.begin(), f.command.end());
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  std::vector<pid_t> pids(f.nproc, -1);
  for (int local = 0; local < f.nproc; ++local) {
    const int rank = f.node_rank * f.nproc + local;
    const pid_t pid = ::fork();
    if (pid < 0) throw std::runtime_error("fork failed: " + std::string(std::strerror(errno)));
    if (pid == 0) {
      std::signal(SIGINT, SIG_DFL);
      std::signal(SIGTERM, SIG_DFL);
      ::setenv("RANK", std::to_string(rank).c_str(), 1);
      ::setenv("WORLD_SIZE", std::to_string(world).c_str(), 1);
      ::setenv("LOCAL_RANK", std::to_string(local).c_str(), 1);
      ::setenv("LOCAL_WORLD_SIZE", std::to_string(f.nproc).c_str(), 1);
      ::setenv("GROUP_RANK", std::to_string(f.node_rank).c_str(), 1);
      ::setenv("MASTER_ADDR", f.master_addr.c_str(), 1);
      ::setenv("MASTER_PORT", std::to_string(port).c_str(), 1);
      ::setenv("TORCHELASTIC_RESTART_COUNT", std::to_string(attempt).c_str(), 1);
      ::setenv("TORCHELASTIC_MAX_RESTARTS", std::to_string(f.max_restarts).c_str(), 1);
      ::unsetenv("TORCHELASTIC_USE_AGENT_STORE");
      ::execv("/proc/self/exe", argv.data());
      std::fprintf(stderr, "capsnet launch: cannot start %s: %s\n", "/proc/self/exe",
                   std::strerror(errno));
      std::_Exit(127);
    }
    pids[local] = pid;
  }
  std::cerr << "capsnet launch: " << f.nproc << " processes (ranks " << f.node_rank * f.nproc
            << "-" << f.node_rank * f.nproc + f.nproc - 1 << " of " << world << "), rendezvous at "
            << f.master_addr << ":" << port;
  if (f.max_restarts > 0) std::cerr << ", attempt " << attempt + 1 << " of " << f.max_restarts + 1;
  std::cerr << std::endl;

  // After a failure the others get --grace seconds to stop on their own
  // (they notice within --dist-timeout and say why), or none when the group
  // will be restarted (torchrun's way): then SIGTERM, and SIGKILL 10 s later.
  const bool restarting = attempt < f.max_restarts;
  int result = 0, running = f.nproc;
  auto failed_at = std::chrono::steady_clock::time_point::max();
  bool terminated = false, killed = false;
  while (running > 0) {
    if (const int signal = signals.take()) {
      stopped = true;
      for (const pid_t pid : pids) {
        if (pid > 0) ::kill(pid, signal);
      }
    }
    int status = 0;
    const pid_t done = ::waitpid(-1, &status, WNOHANG);
    if (done > 0) {
      for (int local = 0; local < f.nproc; ++local) {
        if (pids[local] != done) continue;
        pids[local] = -1;
        --running;
        if (exit_code(status) != 0) {
          if (result == 0) {
            result = exit_code(status);
            if (failed_at == std::chrono::steady_clock::time_point::max()) {
              failed_at = std::chrono::steady_clock::now();
            }
          }
          std::cerr << "capsnet launch: rank " << f.node_rank * f.nproc + local << " (PID "
                    << done << ") " << describe(status) << std::endl;
        }
      }
      continue;
    }
    const double since_failure =
        failed_at == std::chrono::steady_clock::time_point::max()
            ? -1
            : std::chrono::duration<double>(std::chrono::steady_clock::now() - failed_at).count();
    const double grace = restarting && !stopped ? 0 : f.grace;
    if (since_failure >= grace && !terminated) {
      if (grace > 0) {
        std::cerr << "capsnet launch: " << running << " process(es) still running " << grace
                  << " s after the first failure; terminating them" << std::endl;
      }
      for (const pid_t pid : pids) {
        if (pid > 0) ::kill(pid, SIGTERM);
      }
      terminated = true;
    }
    if (since_failure > grace + 10 && !killed) {
      for (const pid_t pid : pids) {
        if (pid > 0) ::kill(pid, SIGKILL);
      }
      killed = true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return result;
}

int run(const LaunchFlags& f) {
  if (f.command.empty() || f.command[0] != "train") {
    throw std::invalid_argument("capsnet launch runs 'capsnet train' in each process: write "
                                "capsnet launch --nproc N -- train [train options]");
  }
  if (f.node_rank >= f.nnodes) {
    throw std::invalid_argument("--node-rank must be below --nnodes");
  }
  if (f.nnodes > 1 && f.master_port == 0) {
    throw std::invalid_argument("a job on several machines needs --master-addr (machine 0's "
                                "address) and --master-port, the same on every machine");
  }
  if (f.max_restarts > 0 &&
      std::find(f.command.begin(), f.command.end(), "--resume-if-exists") == f.command.end()) {
    std::cerr << "capsnet launch: warning: --max-restarts without train's --resume-if-exists "
                 "restarts the run from scratch each time (or fails on its non-empty --out)"
              << std::endl;
  }
  const int port = f.master_port > 0 ? f.master_port : free_port();
  StopSignals signals(StopSignals::Repeat::kForward); // each passed on to the children
  bool stopped = false;
  for (int attempt = 0;; ++attempt) {
    const int result = run_group(f, port, attempt, signals, stopped);
    if (result == 0 || stopped || attempt >= f.max_restarts) {
      if (result != 0 && !stopped && f.max_restarts > 0) {
        std::cerr << "capsnet launch: the group failed " << attempt + 1
                  << " times; no restarts left (--max-restarts " << f.max_restarts << ")"
                  << std::endl;
      }
      return result;
    }
    std::cerr << "capsnet launch: restarting the group (restart " << attempt + 1 << " of "
              << f.max_restarts << ")" << std::endl;
  }
}

} // namespace

Runner add_launch_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "launch", "Run 'capsnet train' as N data-parallel processes on this machine (torchrun's "
                "variables, no Python): capsnet launch --nproc 2 -- train [options]");
  auto flags = std::make_shared<LaunchFlags>();
  cmd->add_option("--nproc", flags->nproc, "processes on this machine")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  cmd->add_option("--nnodes", flags->nnodes, "machines in the job")
      ->check(CLI::Range(1, 1 << 16))
      ->capture_default_str();
  cmd->add_option("--node-rank", flags->node_rank, "this machine's index in the job")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  cmd->add_option("--master-addr", flags->master_addr, "machine 0's address")
      ->capture_default_str();
  cmd->add_option("--master-port", flags->master_port,
                  "rendezvous port on machine 0 (default: a free port; required with --nnodes)")
      ->check(CLI::Range(1, 65535));
  cmd->add_option("--grace", flags->grace,
                  "seconds the other processes get to stop on their own after one fails")
      ->check(finite_range(0, 86400))
      ->capture_default_str();
  cmd->add_option("--max-restarts", flags->max_restarts,
                  "restart the whole group up to N times after a process fails (torchrun's "
                  "--max_restarts); give train --resume-if-exists so that it resumes from "
                  "last.pt")
      ->check(CLI::Range(0, 1000))
      ->capture_default_str();
  cmd->add_option("command", flags->command, "after --: train and its options")->required();
  return [flags]() { return run(*flags); };
}

} // namespace capsnet::cli
