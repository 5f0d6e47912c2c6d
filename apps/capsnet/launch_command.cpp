// capsnet launch: N local processes of `capsnet train` with torchrun's
// environment, without Python (the library's dist::launch).

#include "commands.h"
#include "capsnet/runtime/process.h"

#include "capsnet/dist/launch.h"

#include <algorithm>
#include <iostream>
#include <memory>
#include <stdexcept>
#include <vector>

namespace capsnet::cli {

namespace {

struct LaunchFlags {
  dist::LaunchOptions options;
  std::vector<std::string> command;
};

int run(LaunchFlags& f) {
  if (f.command.empty() || f.command[0] != "train") {
    throw std::invalid_argument("capsnet launch runs 'capsnet train' in each process: write "
                                "capsnet launch --nproc N -- train [train options]");
  }
  auto& o = f.options;
  if (o.max_restarts > 0 &&
      std::find(f.command.begin(), f.command.end(), "--resume-if-exists") == f.command.end()) {
    std::cerr << "capsnet launch: warning: --max-restarts without train's --resume-if-exists "
                 "restarts the run from scratch each time (or fails on its non-empty --out)"
              << std::endl;
  }
  o.argv = {"capsnet"};
  o.argv.insert(o.argv.end(), f.command.begin(), f.command.end());
  o.log = &std::cerr;
  StopSignals signals(StopSignals::Repeat::kForward); // each passed on to the children
  o.take_signal = [&signals] { return signals.take(); };
  return dist::launch(o);
}

} // namespace

Runner add_launch_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "launch", "Run 'capsnet train' as N data-parallel processes on this machine (torchrun's "
                "variables, no Python): capsnet launch --nproc 2 -- train [options]");
  auto flags = std::make_shared<LaunchFlags>();
  auto& o = flags->options;
  cmd->add_option("--nproc", o.nproc, "processes on this machine")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  cmd->add_option("--nnodes", o.nnodes, "machines in the job")
      ->check(CLI::Range(1, 1 << 16))
      ->capture_default_str();
  cmd->add_option("--node-rank", o.node_rank, "this machine's index in the job")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  cmd->add_option("--master-addr", o.master_addr, "machine 0's address")
      ->capture_default_str();
  cmd->add_option("--master-port", o.master_port,
                  "rendezvous port on machine 0 (default: a free port; required with --nnodes)")
      ->check(CLI::Range(1, 65535));
  cmd->add_option("--grace", o.grace,
                  "seconds the other processes get to stop on their own after one fails")
      ->check(finite_range(0, 86400))
      ->capture_default_str();
  cmd->add_option("--max-restarts", o.max_restarts,
                  "restart the whole group up to N times after a process fails (torchrun's "
                  "--max_restarts); give train --resume-if-exists so that it resumes from "
                  "last.pt")
      ->check(CLI::Range(0, 1000))
      ->capture_default_str();
  cmd->add_option("command", flags->command, "after --: train and its options")->required();
  return [flags]() { return run(*flags); };
}

} // namespace capsnet::cli
