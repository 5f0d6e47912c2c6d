#include "cli_app.h"

#include "capsnet/runtime/process.h"
#include "capsnet/recipes/errors.h"

#include <exception>
#include <iostream>

int main(int argc, char** argv) {
  capsnet::ensure_fast_blas(argv);
  capsnet::keep_freed_memory();
  CLI::App app{"capsnet: capsule networks with dynamic routing (Sabour, Frosst & Hinton, 2017)"};
  const auto commands = capsnet::cli::add_commands(app);
  capsnet::cli::add_list_options_flag(app, commands, std::cout);
  try {
    app.parse(argc, argv);
    return capsnet::cli::parsed_runner(app, commands)();
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const std::exception& e) {
    std::cerr << capsnet::cli::program_name() << ": " << capsnet::error_message(e) << "\n";
  }
  return 1;
}
