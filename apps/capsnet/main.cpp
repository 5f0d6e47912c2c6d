#include "cli_app.h"
#include "process.h"

#include "capsnet/data/idx_reader.h"
#include "capsnet/dist/process_group.h"
#include "capsnet/viz/image.h"
#include "capsnet/engine/checkpoint.h"
#include "capsnet/engine/runtime.h"
#include "capsnet/engine/step.h"
#include "capsnet/io/atomic_file.h"

#include <c10/util/Exception.h>

#include <iostream>
#include <stdexcept>

int main(int argc, char** argv) {
  capsnet::cli::ensure_fast_blas(argv);
  capsnet::cli::keep_freed_memory();
  CLI::App app{"capsnet: capsule networks with dynamic routing (Sabour, Frosst & Hinton, 2017)"};
  const auto commands = capsnet::cli::add_commands(app);
  capsnet::cli::add_list_options_flag(app, commands, std::cout);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    return capsnet::cli::parsed_runner(app, commands)();
  } catch (const capsnet::DataError& e) {
    std::cerr << capsnet::cli::program_name() << ": data error: " << e.what() << "\n";
  } catch (const capsnet::ImageError& e) {
    std::cerr << capsnet::cli::program_name() << ": image error: " << e.what() << "\n";
  } catch (const capsnet::CheckpointError& e) {
    std::cerr << capsnet::cli::program_name() << ": checkpoint error: " << e.what() << "\n";
  } catch (const capsnet::dist::DistributedError& e) {
    std::cerr << capsnet::cli::program_name() << ": distributed training stopped: " << e.what()
              << "\nlast.pt in the run directory holds the last finished epoch (or the last "
                 "interruption); continue with: capsnet train --resume RUN_DIR\n";
  } catch (const capsnet::TrainingError& e) {
    std::cerr << capsnet::cli::program_name() << ": training error: " << e.what() << "\n";
  } catch (const capsnet::WriteError& e) {
    std::cerr << capsnet::cli::program_name() << ": write error: " << e.what() << "\n";
  } catch (const std::invalid_argument& e) {
    std::cerr << capsnet::cli::program_name() << ": invalid option: " << e.what() << "\n";
  } catch (const c10::Error& e) {
    std::cerr << capsnet::cli::program_name() << ": internal error: " << e.what_without_backtrace() << "\n";
  } catch (const std::exception& e) {
    std::cerr << capsnet::cli::program_name() << ": error: " << e.what() << "\n";
  }
  return 1;
}
