#pragma once

#include "commands.h"

#include <CLI/CLI.hpp>

#include <iosfwd>
#include <map>
#include <string>
#include <vector>

namespace capsnet::cli {

/// capsnet's subcommands, as add_commands put them in an app.
struct Commands {
  /// Each subcommand's runner, by name; a left-out subcommand's fails, saying so.
  std::map<std::string, Runner> runners;
  /// The subcommands this build left out (-DCAPSNET_WITH_FIGURES=OFF, -DCAPSNET_WITH_SERVE=OFF).
  std::vector<std::string> left_out;
};

/// Adds every subcommand to `app` and requires exactly one. One App for the
/// tool (main.cpp, which runs the parsed subcommand) and for fuzz/fuzz_cli.cpp
/// (which parses only). The runners own every variable the options write
/// into: keep them alive until parsing is done.
Commands add_commands(CLI::App& app);

/// The runner of the subcommand that `app` parsed; add_commands' require_subcommand
/// guarantees there is one.
const Runner& parsed_runner(const CLI::App& app, const Commands& commands);

/// Writes every option of every subcommand, read from the App itself, as one
/// JSON object per (sub)command and line:
///   {"command": "experiment table1", "in_build": true,
///    "options": [{"name": "--trials", "values": 1, "default": "3"}, ...]}
/// "in_build" is false for the subcommands in `left_out`; "values" is the
/// number of arguments an option takes (0: a flag), "default" CLI11's default
/// string (empty when none is shown). Help flags and positionals are left out.
/// tests/cli_options_test.sh checks its table against this list.
void write_option_list(const CLI::App& app, const std::vector<std::string>& left_out,
                       std::ostream& out);

/// The hidden flag --list-options: write_option_list on `out` (which must
/// outlive parsing), then exit 0.
void add_list_options_flag(CLI::App& app, const Commands& commands, std::ostream& out);

} // namespace capsnet::cli
